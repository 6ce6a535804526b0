#!/usr/bin/env bash
# Mutation testing of one module with mutmut 3.x (`pip install mutmut`), using only its fast tests.
#
#   benchmarks/mutation.sh MODULE [TIME_LIMIT_S]      e.g. benchmarks/mutation.sh scoring/ot_math.py 900
#
# MODULE is a path under src/xcurate listed in [tool.xcurate.mutation] of pyproject.toml (which maps
# it to its tests). The run happens in a scratch copy (MUTATION_WORKDIR, default a new /tmp folder)
# whose [tool.mutmut] is narrowed to MODULE; mutmut's `mutants/` never lands in the repository.
# MUTATION_JOBS (default 1) parallel workers; MUTATION_PYTEST_ARGS extra pytest arguments (e.g. a
# --deselect of a test that cannot pass under mutmut's trampolines, such as a torch.compile one). Prints the per-status counts and the kill rate;
# `cd WORKDIR && mutmut show NAME` shows one mutant's diff.
set -euo pipefail
MODULE=${1:?usage: benchmarks/mutation.sh MODULE [TIME_LIMIT_S]}
LIMIT=${2:-1500}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${MUTATION_WORKDIR:-$(mktemp -d /tmp/xcurate-mutation.XXXXXX)}
mkdir -p "$WORK"
cp -r "$ROOT/src" "$ROOT/tests" "$ROOT/pyproject.toml" "$WORK/"
find "$WORK" -name __pycache__ -prune -exec rm -rf {} +
python - "$WORK/pyproject.toml" "$MODULE" "${MUTATION_PYTEST_ARGS:-}" <<'PY'
import re, sys, tomllib
path, module, extra = sys.argv[1], sys.argv[2], sys.argv[3].split()
text = open(path).read()
table = tomllib.loads(text)["tool"]["xcurate"]["mutation"]
if module not in table:
    sys.exit(f"error: {module} is not in [tool.xcurate.mutation] of pyproject.toml: {', '.join(table)}")
text = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[)", "", text)
tests = ", ".join(f'"{t}"' for t in table[module])
text += (f'\n[tool.mutmut]\nsource_paths = ["src"]\nonly_mutate = ["src/xcurate/{module}"]\n'
         f'pytest_add_cli_args = {["-q", "-x", "-p", "no:cacheprovider", *extra]!r}\n'
         f'pytest_add_cli_args_test_selection = [{tests}]\nprocess_isolation = "forkserver"\n')
open(path, "w").write(text)
PY
cd "$WORK"
unset PYTHONPATH  # mutmut puts mutants/src first on sys.path itself
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
echo "mutmut on src/xcurate/$MODULE in $WORK (limit ${LIMIT}s)"
start=$(date +%s)
timeout "$LIMIT" mutmut run --max-children "${MUTATION_JOBS:-1}" > mutmut-run.log 2>&1 || echo "mutmut stopped: exit $? (124 = time limit; see $WORK/mutmut-run.log)"
echo "wall time: $(( $(date +%s) - start )) s"
mutmut results --all true > results.txt || true
python - results.txt <<'PY'
import collections, sys
counts = collections.Counter(line.rsplit(": ", 1)[1].strip() for line in open(sys.argv[1]) if ": " in line)
print(dict(counts))
killed = counts["killed"] + counts["timeout"] + counts["segfault"]
done = killed + counts["survived"] + counts["no tests"] + counts["suspicious"]
if done:
    print(f"kill rate {killed}/{done} = {killed / done:.1%} (timeouts and segfaults count as killed, 'no tests' "
          "as survived; 'not checked' = not reached in the time limit)")
print("survivors:", *[line.split(":")[0].strip() for line in open(sys.argv[1]) if line.rstrip().endswith("survived")])
PY
