#!/bin/sh
# build-index DIR NAME: list every file of DIR with its size, sorted, under a title line.
set -eu
dir=$1 name=$2
echo "app $name"
cd "$dir"
find . -type f | sort | while read -r f; do
    echo "$(wc -c < "$f") $f"
done
