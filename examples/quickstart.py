"""woflo's main demo: the seed's examples, runnable as they are (no __main__ guard needed).

python examples/quickstart.py
"""

import random
import time

from woflo import task
from woflo.runners import SequentialTaskRun


# 1. Ten sleepy workers in parallel, without blocking the main thread.
@task
def sleepy_worker(n):
    time.sleep(1)
    print(f"worker {n}: I am done", flush=True)
    return n


start = time.monotonic()
runs = [sleepy_worker(n) for n in range(10)]
print(f"started 10 runs in {time.monotonic() - start:.3f} s; the main thread is free")
print("results:", [run.get_result() for run in runs])
print(f"all 10 done in {time.monotonic() - start:.2f} s (each slept 1 s)")


# 2. Retries: 3 attempts in all, 0.2 s apart (the logging plugin shows each retry on stderr).
@task(retries=2, retry_sleep_time=0.2)
def fetch_data_from_unstable_api():
    if random.random() < 0.5:
        raise ConnectionError("the API hung up")
    return {"rows": 42}


run = fetch_data_from_unstable_api()
run.wait()
print(f"fetch: {run.state} after {run.attempts} attempt(s): {run.exception() or run.get_result()}")


# 3. A runner per task: SequentialTaskRun runs in this process and blocks.
@task(runner=SequentialTaskRun)
def sequential_sleepy_worker():
    time.sleep(0.1)
    return "I am done"


print("sequential:", sequential_sleepy_worker().get_result())


# 4. The four run methods.
@task
def read_a_book(name):
    time.sleep(0.5)
    return "A good book" if name == "The Old Man and the Sea" else "Meh"


reading = read_a_book("The Old Man and the Sea")
if reading.is_running():
    print("Still reading")
print("book:", reading.get_result())

endless = read_a_book.with_options(name="endless")("War and Peace")
endless.stop()
print(f"stopped: {endless.state}, is_running() = {endless.is_running()}")


# 5. Runs that feed runs: no blocking while they wait for each other, and a map.
@task
def load(i):
    return i * 10


@task
def combine(a, b):
    return a + b


combined = combine(load(1), load(2))  # pending until both loads completed
print("combined:", combined.get_result())
print("mapped:", load.map(range(5)).get_result())

# Every run above is remembered: try `woflo runs` (or `woflo runs --state failed`) now.
