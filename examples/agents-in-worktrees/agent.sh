#!/bin/sh
# A stand-in for an AI coding agent, so the example runs offline in a second.
#
#   sh agent.sh edit NAME yes|no   edit src/NAME.txt; commit it yourself if "yes",
#                                  else leave the change for mapwise to commit
#   sh agent.sh test NAME          write tests/NAME.txt and always commit it
#
# It runs in the item's own worktree (its working directory, also $MAPWISE_WORKTREE),
# on the item's branch ($MAPWISE_BRANCH), so it may edit and commit freely.
set -eu

# Written by workspace.setup in each fresh worktree; git ignores it (see .gitignore).
. ./.agent.env

what=$1
name=$2
case $what in
edit)
    printf '%s: reviewed by %s on %s\n' "$name" "$AGENT_NAME" "$MAPWISE_BRANCH" >>"src/$name.txt"
    if [ "$3" = yes ]; then
        git add "src/$name.txt"
        git commit --quiet -m "agent: review $name"
    fi
    ;;
test)
    mkdir -p tests
    printf 'test that %s still works\n' "$name" >"tests/$name.txt"
    git add "tests/$name.txt"
    git commit --quiet -m "agent: test $name"
    ;;
*)
    echo "agent.sh: unknown action $what" >&2
    exit 2
    ;;
esac
