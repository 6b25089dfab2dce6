#!/usr/bin/env bash
# deps.sh — installs what building and testing hearth needs, when missing.
#
# On Debian 12: a C compiler and make, PCRE2, jansson, libmicrohttpd, libyaml,
# SQLite and libcurl (the libraries hearth links), Node.js and npm (the OpenAI SDK tests of the server),
# clang with its fuzzer runtime (for the fuzz targets) and clang-format (for
# the format check).  Does nothing when everything is present.
set -eu

need=()
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v make >/dev/null 2>&1 || need+=(make)
[ -f /usr/include/pcre2.h ] || need+=(libpcre2-dev)
[ -f /usr/include/jansson.h ] || need+=(libjansson-dev)
[ -f /usr/include/microhttpd.h ] || need+=(libmicrohttpd-dev)
[ -f /usr/include/yaml.h ] || need+=(libyaml-dev)
[ -f /usr/include/sqlite3.h ] || need+=(libsqlite3-dev)
ls /usr/include/*/curl/curl.h /usr/include/curl/curl.h >/dev/null 2>&1 || need+=(libcurl4-openssl-dev)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v chromium >/dev/null 2>&1 || need+=(chromium) # the dashboard's browser tests
command -v clang >/dev/null 2>&1 || need+=(clang)
command -v clang-format >/dev/null 2>&1 || need+=(clang-format)
ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 ||
    ls /usr/lib/llvm-*/lib/clang/*/lib/*/libclang_rt.fuzzer*.a >/dev/null 2>&1 ||
    need+=(libclang-rt-dev)
[ ${#need[@]} -eq 0 ] && exit 0

echo "deps: installing ${need[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
        echo "deps: need root (or sudo) to install: ${need[*]}" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
    $sudo apt-get update >/dev/null
    $sudo apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
}
