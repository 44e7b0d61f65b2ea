"""The figures `bench/split-gain.sh` prints from `flotilla bench --report-every` results files.

    split-gain.py split-run FILE           the run from 1 range: before the first split, the end
    split-gain.py run FILE ROUND ARM       one line for one run of the alternated rounds
    split-gain.py summary OUT ROUNDS CLIENTS   medians and per-round ratios of OUT/round-*-*.json
"""
import json
import statistics
import sys

ARMS = ("auto", "pre64", "one")


def run_of(path):
    return json.load(open(path))["runs"][0]


def rate(intervals):
    """Puts per second over these intervals together."""
    return sum(i["ops"] for i in intervals) / sum(i["seconds"] for i in intervals)


def last_third(intervals):
    """The last third of a run's intervals (at least one): after most of the splits."""
    return intervals[-max(1, round(len(intervals) / 3)):]


def leaders(interval):
    by_node = sorted(interval["leaders"].items(), key=lambda pair: int(pair[0]))
    return "/".join(str(led) for _, led in by_node)


def quiet_and_around_splits(intervals):
    """The intervals (past the first) whose range count is the same as the one before and the one
    after, and the others (the map changed in them or beside them; the last is left out)."""
    counts = [i["ranges"] for i in intervals]
    quiet, around = [], []
    for index in range(1, len(intervals) - 1):
        steady = counts[index - 1] == counts[index] == counts[index + 1]
        (quiet if steady else around).append(intervals[index])
    return quiet, around


def split_run(path):
    run = run_of(path)
    intervals = run["intervals"]
    before = [i for i in intervals if i["ranges"] == 1]
    if before:
        print(f"  before any split: {rate(before):.0f} puts/s over "
              f"{sum(i['seconds'] for i in before):.1f} s at 1 range")
    else:
        print("  before any split: none (the first interval ended with more than 1 range)")
    first_split = next((i for i in intervals if (i["ranges"] or 1) > 1), None)
    if first_split:
        print(f"  first split seen at {first_split['start_seconds'] + first_split['seconds']:.1f} s")
    quiet, around = quiet_and_around_splits(intervals)
    if quiet and around:
        print(f"  intervals with no split in them or beside them: {rate(quiet):.0f} puts/s "
              f"({len(quiet)}); the others, after the first: {rate(around):.0f} puts/s "
              f"({len(around)})")
    last = last_third(intervals)
    ranges = [i["ranges"] for i in last if i["ranges"] is not None]
    end = last[-1]["start_seconds"] + last[-1]["seconds"]
    print(f"  last third ({last[0]['start_seconds']:.1f}-{end:.1f} s): {rate(last):.0f} puts/s, "
          f"{min(ranges)}-{max(ranges)} ranges, ranges led by node 1/2/3 at the end "
          f"{leaders(intervals[-1])}")
    print(f"  whole run: {run['ops_per_second']:.0f} puts/s, p99 "
          f"{run['latency_us']['p99'] / 1000:.1f} ms, p99.9 {run['latency_us']['p999'] / 1000:.1f} "
          f"ms, errors {run['errors'] or 'none'}")


def one(path, round_, arm):
    run = run_of(path)
    intervals = run["intervals"]
    ranges = intervals[-1]["ranges"]
    latency = run["latency_us"]
    print(f"round {round_}, {arm:5}: {run['ops_per_second']:6.0f} puts/s, last third "
          f"{rate(last_third(intervals)):6.0f}, {ranges} range{'' if ranges == 1 else 's'} at the "
          f"end (led {leaders(intervals[-1])}), p99 {latency['p99'] / 1000:.1f} ms, p99.9 "
          f"{latency['p999'] / 1000:.1f} ms, {run['entries_per_fsync']:.1f} entries per fsync, "
          f"errors {run['errors'] or 'none'}")


def summary(out, rounds, clients):
    def figures(round_, arm):
        run = run_of(f"{out}/round-{round_}-{arm}.json")
        return run["ops_per_second"], rate(last_third(run["intervals"]))

    arms = {arm: [figures(r, arm) for r in range(1, rounds + 1)] for arm in ARMS}
    for index, what in ((0, "whole run"), (1, "last third")):
        median = {arm: statistics.median(f[index] for f in runs) for arm, runs in arms.items()}

        def ratios(over):
            return ", ".join(f"{a[index] / o[index]:.2f}" for a, o in zip(arms["auto"], arms[over]))

        print(f"{clients} clients, {rounds} rounds, {what}: medians auto {median['auto']:.0f} "
              f"puts/s, pre64 {median['pre64']:.0f}, one {median['one']:.0f}; auto/pre64 "
              f"{median['auto'] / median['pre64']:.2f}x (per round {ratios('pre64')}), auto/one "
              f"{median['auto'] / median['one']:.2f}x (per round {ratios('one')})")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "split-run":
        split_run(*args)
    elif command == "run":
        one(*args)
    elif command == "summary":
        summary(args[0], int(args[1]), args[2])
    else:
        sys.exit(__doc__)
