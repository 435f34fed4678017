#!/usr/bin/env bash
# Mutation testing of one module with mutmut 3 (pip install "mutmut>=3.8,<4").
#
#   tools/mutation.sh MODULE [-- MUTANT_NAME_GLOBS...]
#
# MODULE is one of: schedules, config, loop-resume, claims, stats (the module and the test
# files that specify it are listed below). The run happens in a copy of the working tree
# under ${MUTATION_DIR:-/tmp/tvlars-mutation}/MODULE (mutmut writes its mutants/ folder
# there), one mutant at a time (MUTATION_CHILDREN=2: two at once, on an otherwise idle
# machine), at nice 10 (run the script itself without nice: nice adds up). It prints the surviving mutants and the score: mutants killed (a test
# failed or timed out) / mutants checked.
# Inspect one survivor with: (cd /tmp/tvlars-mutation/MODULE && mutmut show NAME).
# Optional GLOBS (mutmut's mutant names, e.g. "tvlars.schedules.x_polynomial*") check only
# those mutants.
#
# Not part of .ci/run: a module takes minutes to tens of minutes on two cores.
#
# loop-resume mutates src/tvlars/train/driver.py (the epoch driver both tasks share) but runs
# only the mutants whose change lies in _drive's resume block (from "checkpoint =
# folder.load_checkpoint(" to the "resuming"
# log line), against the resume tests.
set -euo pipefail

module=${1:?usage: tools/mutation.sh schedules|config|loop-resume|claims|stats [-- GLOBS...]}
shift
[[ ${1:-} == -- ]] && shift
globs=("$@")

if ! command -v mutmut >/dev/null || ! mutmut --version 2>/dev/null | grep -q "version 3"; then
    echo 'error: mutmut 3 is needed: pip install "mutmut>=3.8,<4"' >&2
    exit 2
fi

case $module in
    schedules)
        source=src/tvlars/schedules.py
        tests=(tests/test_schedules.py) ;;
    config)
        source=src/tvlars/train/config.py
        tests=(tests/test_train_config.py
               tests/test_train.py::test_run_id_depends_on_what_is_computed_not_where
               tests/test_train.py::test_toml_config_supplies_the_flags_and_flags_override_it
               tests/test_train.py::test_bad_flags_give_a_clear_error) ;;
    loop-resume)
        source=src/tvlars/train/driver.py
        # TVLARS, WA-LARS and WA-LARS in fp16 resumed (WA-LAMB takes the same path), and a
        # folder of another run refused.
        tests=(tests/test_train.py -k "killed_run_resumes and lars or another_run") ;;
    claims)
        source=src/tvlars/experiments/claims.py
        tests=(tests/test_experiments_claims.py tests/test_experiments_claims_text.py
               tests/test_experiments_report.py) ;;
    stats)
        source=src/tvlars/experiments/stats.py
        tests=(tests/test_experiments_claims.py tests/test_experiments_claims_text.py
               tests/test_experiments_report.py) ;;
    *)
        echo "error: unknown module '$module': choose schedules, config, loop-resume, claims or stats" >&2
        exit 2 ;;
esac

repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
work=${MUTATION_DIR:-/tmp/tvlars-mutation}/$module
rm -rf "$work"
mkdir -p "$work"
# The working tree as it is (tracked and untracked, not ignored files) of src/, tests/ and
# pyproject.toml.
(cd "$repo" && git ls-files -co --exclude-standard -z src tests pyproject.toml) \
    | (cd "$repo" && tar --null -T - -cf -) | tar -xf - -C "$work"

{
    echo "[mutmut]"
    echo "source_paths = src"
    echo "only_mutate = $source"
    echo "pytest_add_cli_args = -p no:cacheprovider -q"
    echo "pytest_add_cli_args_test_selection ="
    for arg in "${tests[@]}"; do echo "    $arg"; done
} >"$work/setup.cfg"

cd "$work"
# mutmut puts mutants/src first on sys.path; a PYTHONPATH to a checkout would shadow it.
unset PYTHONPATH
export TVLARS_CACHE=$work/cache

if [[ $module == loop-resume && ${#globs[@]} -eq 0 ]]; then
    mapfile -t globs < <(python "$repo/tools/resume_mutants.py" "$source")
    echo "loop-resume: ${#globs[@]} mutants change the resume block"
fi

nice -n 10 mutmut run --max-children "${MUTATION_CHILDREN:-1}" "${globs[@]}"
echo "surviving mutants (inspect one: cd $work && mutmut show NAME):"
mutmut results
# The score over the mutants this run checked: killed (or timed out) / checked.
mutmut results --all true | python -c '
import collections, sys
counts = collections.Counter(line.rsplit(": ", 1)[1].strip() for line in sys.stdin if ": " in line)
counts.pop("not checked", None)
caught = counts["killed"] + counts["timeout"]
checked = sum(counts.values())
print(f"score {caught}/{checked} = {100 * caught / max(checked, 1):.1f}%", dict(counts))
'
