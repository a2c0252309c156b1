"""Build glue for the Cython codec in ext/.

All metadata lives in pyproject.toml; this file only declares the compiled
extension so that `pip install .` and `pip install -e .` build it. The
extension is compiled into the package as rserver.codec._cupdate.
"""
from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "rserver.codec._cupdate",
        ["ext/_cupdate.pyx"],
        extra_compile_args=["-O3"],
    ),
    Extension("rserver.rib._tables", ["ext/_rib.pyx"], extra_compile_args=["-O3"]),
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
)
