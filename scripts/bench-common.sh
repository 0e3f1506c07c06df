# Shared by the bench scripts (sourced, not run): the checks each of them
# makes before measuring anything. Callers set VENV_PY and NAME (their
# own name, for messages) first.

# Prints the comment block at the top of the calling script (its usage).
bench_usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$1"
}

# Exits unless the Python peers' venv exists.
bench_need_venv() {
    if [ ! -x "$VENV_PY" ]; then
        echo "$NAME: no $VENV_PY; run: bash scripts/python-peers.sh --with-bench" >&2
        exit 1
    fi
}

# Exports JAVA_HOME, found from `java` on the PATH when unset (PySpark
# needs it); exits when there is no Java.
bench_need_java() {
    if [ -z "${JAVA_HOME:-}" ]; then
        local java_bin
        java_bin="$(command -v java || true)"
        if [ -z "$java_bin" ]; then
            echo "$NAME: no java on the PATH and JAVA_HOME is not set" >&2
            exit 1
        fi
        JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$java_bin")")")"
    fi
    export JAVA_HOME
}
