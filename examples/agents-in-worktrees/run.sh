#!/usr/bin/env bash
# Runs workflow.yml in a new git repository in a temporary folder, and shows the result.
#
#   bash examples/agents-in-worktrees/run.sh        (MAPWISE=/path/to/mapwise to choose one)
#
# Everything it makes is under that temporary folder (the repository, the job's state,
# its worktrees); it prints where, and touches nothing else.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mapwise=${MAPWISE:-mapwise}
job=agents-demo
work=$(mktemp -d "${TMPDIR:-/tmp}/mapwise-agents-in-worktrees.XXXXXX")
repo=$work/repo
state=$work/state

# A tiny project: one file per item, the workflow, the agent and the items, committed.
mkdir "$repo"
cd "$repo"
git init --quiet --initial-branch=main
git config user.name "Example User"
git config user.email "user@example.invalid"
git config commit.gpgsign false   # this repository only: mapwise does not turn signing off
mkdir src
for name in alpha beta gamma delta; do
    printf '%s: not reviewed yet\n' "$name" >"src/$name.txt"
done
cp "$here/workflow.yml" "$here/agent.sh" "$here/items.json" .
printf '.agent.env\n' >.gitignore
git add --all
git commit --quiet -m "a tiny project"

"$mapwise" run workflow.yml --state-dir "$state" --job-id "$job"

echo
echo "git log --graph --oneline mapwise/$job/result:"
git log --graph --oneline "mapwise/$job/result"
echo
echo "the branch to merge: mapwise/$job/result"
echo "  cd $repo && git merge mapwise/$job/result"
echo "everything this example made is in $work (remove it with: rm -rf $work)"
