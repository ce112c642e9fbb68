#!/bin/sh
# fetch CACHE NAME: put NAME.bin into CACHE unless it is already there (a stand-in for a
# package download), then log the request in the cache.
set -eu
cache=$1 name=$2
if [ ! -f "$cache/$name.bin" ]; then
    seq 1 50000 | sha256sum | cut -d' ' -f1 > "$cache/$name.bin.part"
    mv "$cache/$name.bin.part" "$cache/$name.bin"
fi
echo "fetched $name" >> "$cache/requests.log"
