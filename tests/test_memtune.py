"""rserver/memtune.py: glibc malloc tuning is applied (this is a glibc machine) and the
trimmer runs on the loop and can be cancelled."""
import asyncio

from rserver import memtune


def test_tune_malloc_accepted_by_glibc():
    assert memtune.tune_malloc() is True


def test_trimmer_runs_and_stops():
    calls = []

    async def main():
        lib = memtune._load()
        real = lib.malloc_trim

        class Spy:
            def __getattr__(self, name):
                return getattr(lib, name)

            def malloc_trim(self, pad):
                calls.append(pad)
                return real(pad)

        memtune._libc = Spy()
        try:
            t = memtune.start_trimmer(0.01)
            await asyncio.sleep(0.1)
            t.cancel()
        finally:
            memtune._libc = lib
    asyncio.run(main())
    assert calls and all(c == 0 for c in calls)
