# Helpers shared by the benchmark scripts (sourced, not run).

# wait_for_port PORT [SECONDS]: waits until 127.0.0.1:PORT accepts
# connections (default 10 s); fails after that.
wait_for_port() {
    local deadline=$((SECONDS + ${2:-10}))
    until (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "nothing listens on 127.0.0.1:$1 after ${2:-10} s" >&2
            return 1
        fi
        sleep 0.1
    done
}

# cpu_seconds PID: user + system CPU seconds the process has used so far
# (all its threads, io_uring workers included).
cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}
