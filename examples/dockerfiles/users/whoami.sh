#!/bin/sh
echo "running as $(id -un) ($(id -u):$(id -g))"
