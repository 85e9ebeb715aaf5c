# contrib/bench/lib.sh — helpers the bench scripts share (sourced, not run).

# wait_port PORT [TENTHS [PID]]: 0 once something accepts on 127.0.0.1:PORT,
# within TENTHS tenths of a second (default 100); 1 on time-out, or at once
# if PID (the process that should listen) has exited.
wait_port() {
    local i
    for i in $(seq "${2:-100}"); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        [ -z "${3:-}" ] || kill -0 "$3" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# cpu_ticks PID: utime + stime of the process, all its threads, in clock ticks.
cpu_ticks() {
    awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$1/stat" 2>/dev/null || echo 0
}
