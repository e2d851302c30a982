# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_singleton_exec_global_optspecs
    string join \n endpoints= cacert= cert= key= user= password= dial-timeout= election= id= slots= ttl= grace= margin= keepalive-interval= stop-signal= on-lease-lost= on-child-exit= acquire-timeout= once= once-attempts= health-addr= resign-signal= hot-standby role-signal= promote-timeout= resign-token-file= resign-holdoff= prefix= health-cmd= health-url= health-interval= health-timeout= health-retries= health-start-period= watchdog= ready-timeout= log-format= v/verbose q/quiet h/help V/version
end

function __fish_singleton_exec_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_singleton_exec_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_singleton_exec_using_subcommand
    set -l cmd (__fish_singleton_exec_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l endpoints -d 'etcd endpoints, comma-separated, each http://HOST:PORT, https://HOST:PORT or HOST:PORT. Falls back to ETCDCTL_ENDPOINTS. [default: http://127.0.0.1:2379]' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l cacert -d 'CA certificate (PEM) to verify etcd\'s server certificate. Falls back to ETCDCTL_CACERT' -r -F
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l cert -d 'Client certificate (PEM) for mutual TLS. Falls back to ETCDCTL_CERT' -r -F
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l key -d 'Client private key (PEM) for mutual TLS. Falls back to ETCDCTL_KEY' -r -F
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l user -d 'etcd user name. Falls back to ETCDCTL_USER (which may be USER:PASSWORD)' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l password -d 'etcd password; prefer the environment variable. Never logged. Falls back to ETCDCTL_PASSWORD' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l dial-timeout -d 'Timeout of each etcd request and of connecting; more than 0s' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l election -d 'Election name: replicas with the same name share one leader. Letters, digits, \'.\', \'_\', \'-\'. [default: the file name of COMMAND]' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l id -d 'This replica\'s identity, stored as the election value and shown by `status`. [default: host name]' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l slots -d 'Run N copies across the replicas instead of one, each holding a slot 0..N-1 (given to the child as SINGLETON_EXEC_SLOT). Every replica of the election must use the same N; a replica that finds another N in etcd exits with code 2. 1 keeps the singleton\'s etcd keys exactly' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l ttl -d 'Lease TTL, whole seconds, from 2s to 1year. A crashed leader is replaced after about this long' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l grace -d 'Time between the stop signal and SIGKILL. [default: 30% of --ttl]' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l margin -d 'Slack kept between SIGKILL and the earliest moment etcd may expire the lease. [default: 10% of --ttl]' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l keepalive-interval -d 'Time between keepalives while all is well. [default: 10% of --ttl]' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l stop-signal -d 'Signal that asks the child to stop (name like TERM or SIGTERM, or a number)' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l on-lease-lost -d 'What to do when leadership is lost: stop the child, then campaign again or exit (code 122)' -r -f -a "exit\t'Exit with code 122 once the child\'s tree is gone'
recampaign\t'Take a new lease and go back to standby'"
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l on-child-exit -d 'What to do when the child exits while leader: give up leadership and exit with its status, restart it (with backoff) while still leader, or give up leadership and campaign again' -r -f -a "exit\t'Revoke the lease (a standby takes over at once) and exit with the child\'s status'
restart\t'Start the child again, with backoff, while still leader'
recampaign\t'Revoke the lease and campaign again as a standby'"
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l acquire-timeout -d 'Give up (exit 124) if not leader after this long (with --once: if the outcome is not known by then); more than 0. [default: wait forever]' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l once -d 'Run COMMAND once across the cluster, to success: every invocation with this NAME (and election) joins one queue; the first to lead runs COMMAND, the others wait. Its success is recorded in etcd, and every waiter, and every later invocation, exits 0 without running it. A failed run is counted, and the next waiter runs it again, up to --once-attempts runs; then every waiter exits with the failed run\'s status. A run cut short (a crash, a lost lease) is run again: at least once, never two at a time. singleton-exec once clear NAME forgets the outcome. Letters, digits, \'.\', \'_\', \'-\'' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l once-attempts -d 'With --once: how many failed runs, across the cluster, before every waiter gives up and exits with the last failed run\'s status. 1 (the default) means no retry. [default: 1]' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l health-addr -d 'Serve /healthz, /leader, /status, /metrics and POST /resign on PORT, :PORT or HOST:PORT (loopback unless a host is given). Off unless given; without a value, 127.0.0.1:8080' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l resign-signal -d 'A signal that makes the leader step down (stop the child, revoke, hold off, campaign again) instead of being forwarded to the child. [default: none, every signal reaches the child]' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l role-signal -d 'With --hot-standby: the signal the child gets after every change of its role file. [default: SIGUSR1]' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l promote-timeout -d 'With --hot-standby: a promoted child that has not confirmed (ROLE=leader) within this long is handled as a child that failed to start: its tree is stopped, the lease given up so another replica can try, and it is started again as a standby per --on-child-exit. [default: 10s]' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l resign-token-file -d 'File holding the bearer token that POST /resign requires (read at start-up, trimmed). Without it, POST /resign is open on a loopback --health-addr and off on any other. Without --health-addr there is no POST /resign: a warning says so' -r -F
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l resign-holdoff -d 'After stepping down, wait this long before campaigning again, so a standby takes over' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l prefix -d 'Key prefix under which elections live, one path segment; the election\'s keys are PREFIX/NAME/' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l health-cmd -d 'Health check command, run with `/bin/sh -c` while leading; exit status 0 is healthy. [default: no health check]' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l health-url -d 'Health check by HTTP GET of an http:// URL; a 2xx status is healthy. Needs no shell, so it works in FROM-scratch images. [default: no health check]' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l health-interval -d 'Time between health checks; the first runs this long after the child starts. Only with --health-cmd or --health-url (alone it is a usage error). [default: 10s]' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l health-timeout -d 'A check that takes longer fails (a command is killed with its process group). At most --health-interval. Only with a check. [default: 5s]' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l health-retries -d 'Consecutive failed checks that make the leader step down; times --health-interval at most 1year. Only with a check. [default: 3]' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l health-start-period -d 'Failed checks during this time after the child starts are not counted (until the first check passes). Only with a check. [default: 0s]' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l watchdog -d 'The child must send WATCHDOG=1 at least this often (it gets WATCHDOG_USEC and WATCHDOG_PID, as under systemd\'s WatchdogSec=): a leader whose child misses it, or sends WATCHDOG=trigger, steps down (the child stopped, a standby takes over). Counted from the child\'s start, or from its READY=1 with --ready-timeout. At least 100ms. [default: no watchdog; WATCHDOG=trigger still steps down]' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l ready-timeout -d 'The child must send READY=1 within this long of its start (systemd\'s Type=notify; an EXTEND_TIMEOUT_USEC= before it gives more time): until it has, /leader answers 503, and a leader whose child does not steps down so another replica can try. [default: the child is ready once started]' -r
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -l hot-standby -d 'Hot standby: COMMAND runs on every replica at once, as a standby, and one of them is told it leads. Its role is in SINGLETON_EXEC_ROLE at start (standby or leader), in the file named by SINGLETON_EXEC_ROLE_FILE (one line: `leader REVISION` or `standby`, replaced atomically), and --role-signal follows every change. The child confirms with ROLE=leader or ROLE=standby on its notify socket. A leader that must stop leading tells its child `standby` and gives the lease up only once the child confirms, or once its tree is killed, which happens before the lease can expire. Not with --slots, --once, --watchdog or --ready-timeout (see docs/hot-standby.md)'
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -s v -l verbose -d 'More log detail (-v debug, -vv trace)'
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -s q -l quiet -d 'Less log detail (-q warnings only, -qq errors only)'
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -s V -l version -d 'Print version'
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -a "status" -d 'Print the current leader of an election (id, key, lease, fencing revision) and every candidate in queue order. Exits 0 if there is a leader, 1 if there is none'
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -a "resign" -d 'Ask the current leader to step down gracefully (planned switchover), from any machine with etcd access. Exits 0 once it has, 1 if there is no leader, 124 after --timeout'
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -a "timing" -d 'Print the worst-case timing of a replica\'s configuration, from the timing model: the etcd outage survived without a stop, the takeover after a crash of the leader\'s host and after a graceful stop, and the stop and kill deadlines after the last acknowledged keepalive. Takes the replica\'s options and SINGLETON_EXEC_* variables (a command after -- is not run; options the figures do not depend on are not checked). Exits 0, or 2 for a configuration the replica would refuse'
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -a "once" -d 'Manage the outcomes of run-once commands (--once NAME): once clear NAME forgets an outcome, so that the next invocation with that NAME runs its command again'
complete -c singleton-exec -n "__fish_singleton_exec_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand status" -l election -d 'Election to read' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand status" -l prefix -d 'Key prefix under which elections live (as given to the replicas)' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand status" -l output -d 'Output format' -r -f -a "text\t'Lines for people'
json\t'One JSON object (`status --watch`: one per line)'"
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand status" -l once -d 'Show the run-once command NAME of the election (--once NAME) instead of its leader: its state (done, running, failed or none), attempts, exit code, and who ran it or runs it. Exits 0 when it is done, 1 otherwise' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand status" -l endpoints -d 'etcd endpoints, comma-separated, each http://HOST:PORT, https://HOST:PORT or HOST:PORT. Falls back to ETCDCTL_ENDPOINTS. [default: http://127.0.0.1:2379]' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand status" -l cacert -d 'CA certificate (PEM) to verify etcd\'s server certificate. Falls back to ETCDCTL_CACERT' -r -F
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand status" -l cert -d 'Client certificate (PEM) for mutual TLS. Falls back to ETCDCTL_CERT' -r -F
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand status" -l key -d 'Client private key (PEM) for mutual TLS. Falls back to ETCDCTL_KEY' -r -F
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand status" -l user -d 'etcd user name. Falls back to ETCDCTL_USER (which may be USER:PASSWORD)' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand status" -l password -d 'etcd password; prefer the environment variable. Never logged. Falls back to ETCDCTL_PASSWORD' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand status" -l dial-timeout -d 'Timeout of each etcd request and of connecting; more than 0s' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand status" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand status" -l watch -d 'Keep running and print the leader again on every change (one line, or one JSON object per line), until SIGINT or SIGTERM (then exit 0)'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand status" -s v -l verbose -d 'More log detail (-v debug, -vv trace)'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand status" -s q -l quiet -d 'Less log detail (-q warnings only, -qq errors only)'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand resign" -l election -d 'Election whose leader should step down' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand resign" -l prefix -d 'Key prefix under which elections live (as given to the replicas)' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand resign" -l slot -d 'With `--slots N`: the slot (0..N-1) whose holder should step down. Required for an election with slots' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand resign" -l timeout -d 'Give up (exit 124) if the leader has not stepped down after this long' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand resign" -l endpoints -d 'etcd endpoints, comma-separated, each http://HOST:PORT, https://HOST:PORT or HOST:PORT. Falls back to ETCDCTL_ENDPOINTS. [default: http://127.0.0.1:2379]' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand resign" -l cacert -d 'CA certificate (PEM) to verify etcd\'s server certificate. Falls back to ETCDCTL_CACERT' -r -F
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand resign" -l cert -d 'Client certificate (PEM) for mutual TLS. Falls back to ETCDCTL_CERT' -r -F
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand resign" -l key -d 'Client private key (PEM) for mutual TLS. Falls back to ETCDCTL_KEY' -r -F
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand resign" -l user -d 'etcd user name. Falls back to ETCDCTL_USER (which may be USER:PASSWORD)' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand resign" -l password -d 'etcd password; prefer the environment variable. Never logged. Falls back to ETCDCTL_PASSWORD' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand resign" -l dial-timeout -d 'Timeout of each etcd request and of connecting; more than 0s' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand resign" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand resign" -s v -l verbose -d 'More log detail (-v debug, -vv trace)'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand resign" -s q -l quiet -d 'Less log detail (-q warnings only, -qq errors only)'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand resign" -s h -l help -d 'Print help'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l output -d 'Output format' -r -f -a "text\t'Lines for people'
json\t'One JSON object (`status --watch`: one per line)'"
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l endpoints -d 'etcd endpoints, comma-separated, each http://HOST:PORT, https://HOST:PORT or HOST:PORT. Falls back to ETCDCTL_ENDPOINTS. [default: http://127.0.0.1:2379]' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l cacert -d 'CA certificate (PEM) to verify etcd\'s server certificate. Falls back to ETCDCTL_CACERT' -r -F
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l cert -d 'Client certificate (PEM) for mutual TLS. Falls back to ETCDCTL_CERT' -r -F
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l key -d 'Client private key (PEM) for mutual TLS. Falls back to ETCDCTL_KEY' -r -F
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l user -d 'etcd user name. Falls back to ETCDCTL_USER (which may be USER:PASSWORD)' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l password -d 'etcd password; prefer the environment variable. Never logged. Falls back to ETCDCTL_PASSWORD' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l dial-timeout -d 'Timeout of each etcd request and of connecting; more than 0s' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l election -d 'Election name: replicas with the same name share one leader. Letters, digits, \'.\', \'_\', \'-\'. [default: the file name of COMMAND]' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l id -d 'This replica\'s identity, stored as the election value and shown by `status`. [default: host name]' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l slots -d 'Run N copies across the replicas instead of one, each holding a slot 0..N-1 (given to the child as SINGLETON_EXEC_SLOT). Every replica of the election must use the same N; a replica that finds another N in etcd exits with code 2. 1 keeps the singleton\'s etcd keys exactly' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l ttl -d 'Lease TTL, whole seconds, from 2s to 1year. A crashed leader is replaced after about this long' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l grace -d 'Time between the stop signal and SIGKILL. [default: 30% of --ttl]' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l margin -d 'Slack kept between SIGKILL and the earliest moment etcd may expire the lease. [default: 10% of --ttl]' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l keepalive-interval -d 'Time between keepalives while all is well. [default: 10% of --ttl]' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l stop-signal -d 'Signal that asks the child to stop (name like TERM or SIGTERM, or a number)' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l on-lease-lost -d 'What to do when leadership is lost: stop the child, then campaign again or exit (code 122)' -r -f -a "exit\t'Exit with code 122 once the child\'s tree is gone'
recampaign\t'Take a new lease and go back to standby'"
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l on-child-exit -d 'What to do when the child exits while leader: give up leadership and exit with its status, restart it (with backoff) while still leader, or give up leadership and campaign again' -r -f -a "exit\t'Revoke the lease (a standby takes over at once) and exit with the child\'s status'
restart\t'Start the child again, with backoff, while still leader'
recampaign\t'Revoke the lease and campaign again as a standby'"
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l acquire-timeout -d 'Give up (exit 124) if not leader after this long (with --once: if the outcome is not known by then); more than 0. [default: wait forever]' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l once -d 'Run COMMAND once across the cluster, to success: every invocation with this NAME (and election) joins one queue; the first to lead runs COMMAND, the others wait. Its success is recorded in etcd, and every waiter, and every later invocation, exits 0 without running it. A failed run is counted, and the next waiter runs it again, up to --once-attempts runs; then every waiter exits with the failed run\'s status. A run cut short (a crash, a lost lease) is run again: at least once, never two at a time. singleton-exec once clear NAME forgets the outcome. Letters, digits, \'.\', \'_\', \'-\'' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l once-attempts -d 'With --once: how many failed runs, across the cluster, before every waiter gives up and exits with the last failed run\'s status. 1 (the default) means no retry. [default: 1]' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l health-addr -d 'Serve /healthz, /leader, /status, /metrics and POST /resign on PORT, :PORT or HOST:PORT (loopback unless a host is given). Off unless given; without a value, 127.0.0.1:8080' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l resign-signal -d 'A signal that makes the leader step down (stop the child, revoke, hold off, campaign again) instead of being forwarded to the child. [default: none, every signal reaches the child]' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l role-signal -d 'With --hot-standby: the signal the child gets after every change of its role file. [default: SIGUSR1]' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l promote-timeout -d 'With --hot-standby: a promoted child that has not confirmed (ROLE=leader) within this long is handled as a child that failed to start: its tree is stopped, the lease given up so another replica can try, and it is started again as a standby per --on-child-exit. [default: 10s]' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l resign-token-file -d 'File holding the bearer token that POST /resign requires (read at start-up, trimmed). Without it, POST /resign is open on a loopback --health-addr and off on any other. Without --health-addr there is no POST /resign: a warning says so' -r -F
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l resign-holdoff -d 'After stepping down, wait this long before campaigning again, so a standby takes over' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l prefix -d 'Key prefix under which elections live, one path segment; the election\'s keys are PREFIX/NAME/' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l health-cmd -d 'Health check command, run with `/bin/sh -c` while leading; exit status 0 is healthy. [default: no health check]' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l health-url -d 'Health check by HTTP GET of an http:// URL; a 2xx status is healthy. Needs no shell, so it works in FROM-scratch images. [default: no health check]' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l health-interval -d 'Time between health checks; the first runs this long after the child starts. Only with --health-cmd or --health-url (alone it is a usage error). [default: 10s]' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l health-timeout -d 'A check that takes longer fails (a command is killed with its process group). At most --health-interval. Only with a check. [default: 5s]' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l health-retries -d 'Consecutive failed checks that make the leader step down; times --health-interval at most 1year. Only with a check. [default: 3]' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l health-start-period -d 'Failed checks during this time after the child starts are not counted (until the first check passes). Only with a check. [default: 0s]' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l watchdog -d 'The child must send WATCHDOG=1 at least this often (it gets WATCHDOG_USEC and WATCHDOG_PID, as under systemd\'s WatchdogSec=): a leader whose child misses it, or sends WATCHDOG=trigger, steps down (the child stopped, a standby takes over). Counted from the child\'s start, or from its READY=1 with --ready-timeout. At least 100ms. [default: no watchdog; WATCHDOG=trigger still steps down]' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l ready-timeout -d 'The child must send READY=1 within this long of its start (systemd\'s Type=notify; an EXTEND_TIMEOUT_USEC= before it gives more time): until it has, /leader answers 503, and a leader whose child does not steps down so another replica can try. [default: the child is ready once started]' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -l hot-standby -d 'Hot standby: COMMAND runs on every replica at once, as a standby, and one of them is told it leads. Its role is in SINGLETON_EXEC_ROLE at start (standby or leader), in the file named by SINGLETON_EXEC_ROLE_FILE (one line: `leader REVISION` or `standby`, replaced atomically), and --role-signal follows every change. The child confirms with ROLE=leader or ROLE=standby on its notify socket. A leader that must stop leading tells its child `standby` and gives the lease up only once the child confirms, or once its tree is killed, which happens before the lease can expire. Not with --slots, --once, --watchdog or --ready-timeout (see docs/hot-standby.md)'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -s v -l verbose -d 'More log detail (-v debug, -vv trace)'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -s q -l quiet -d 'Less log detail (-q warnings only, -qq errors only)'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand timing" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand once; and not __fish_seen_subcommand_from clear help" -s h -l help -d 'Print help'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand once; and not __fish_seen_subcommand_from clear help" -f -a "clear" -d 'Forget the outcome of a run-once command (its completion record and its attempts), so the next --once NAME invocation runs the command again. Refused while replicas wait or run under NAME (a key in its queue, or a tree marker: a runner not yet gone), unless --force. Exits 0 once cleared (also when there was nothing to clear), 1 when refused'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand once; and not __fish_seen_subcommand_from clear help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand once; and __fish_seen_subcommand_from clear" -l election -d 'Election the run-once command runs in (as given to the replicas; by default their command\'s file name)' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand once; and __fish_seen_subcommand_from clear" -l prefix -d 'Key prefix under which elections live (as given to the replicas)' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand once; and __fish_seen_subcommand_from clear" -l endpoints -d 'etcd endpoints, comma-separated, each http://HOST:PORT, https://HOST:PORT or HOST:PORT. Falls back to ETCDCTL_ENDPOINTS. [default: http://127.0.0.1:2379]' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand once; and __fish_seen_subcommand_from clear" -l cacert -d 'CA certificate (PEM) to verify etcd\'s server certificate. Falls back to ETCDCTL_CACERT' -r -F
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand once; and __fish_seen_subcommand_from clear" -l cert -d 'Client certificate (PEM) for mutual TLS. Falls back to ETCDCTL_CERT' -r -F
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand once; and __fish_seen_subcommand_from clear" -l key -d 'Client private key (PEM) for mutual TLS. Falls back to ETCDCTL_KEY' -r -F
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand once; and __fish_seen_subcommand_from clear" -l user -d 'etcd user name. Falls back to ETCDCTL_USER (which may be USER:PASSWORD)' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand once; and __fish_seen_subcommand_from clear" -l password -d 'etcd password; prefer the environment variable. Never logged. Falls back to ETCDCTL_PASSWORD' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand once; and __fish_seen_subcommand_from clear" -l dial-timeout -d 'Timeout of each etcd request and of connecting; more than 0s' -r
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand once; and __fish_seen_subcommand_from clear" -l log-format -d 'Log format on stderr' -r -f -a "text\t''
json\t''"
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand once; and __fish_seen_subcommand_from clear" -l force -d 'Clear even while replicas wait or run under NAME: a run in progress is not stopped, and its outcome is recorded when it ends'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand once; and __fish_seen_subcommand_from clear" -s v -l verbose -d 'More log detail (-v debug, -vv trace)'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand once; and __fish_seen_subcommand_from clear" -s q -l quiet -d 'Less log detail (-q warnings only, -qq errors only)'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand once; and __fish_seen_subcommand_from clear" -s h -l help -d 'Print help'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand once; and __fish_seen_subcommand_from help" -f -a "clear" -d 'Forget the outcome of a run-once command (its completion record and its attempts), so the next --once NAME invocation runs the command again. Refused while replicas wait or run under NAME (a key in its queue, or a tree marker: a runner not yet gone), unless --force. Exits 0 once cleared (also when there was nothing to clear), 1 when refused'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand once; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand help; and not __fish_seen_subcommand_from status resign timing once help" -f -a "status" -d 'Print the current leader of an election (id, key, lease, fencing revision) and every candidate in queue order. Exits 0 if there is a leader, 1 if there is none'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand help; and not __fish_seen_subcommand_from status resign timing once help" -f -a "resign" -d 'Ask the current leader to step down gracefully (planned switchover), from any machine with etcd access. Exits 0 once it has, 1 if there is no leader, 124 after --timeout'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand help; and not __fish_seen_subcommand_from status resign timing once help" -f -a "timing" -d 'Print the worst-case timing of a replica\'s configuration, from the timing model: the etcd outage survived without a stop, the takeover after a crash of the leader\'s host and after a graceful stop, and the stop and kill deadlines after the last acknowledged keepalive. Takes the replica\'s options and SINGLETON_EXEC_* variables (a command after -- is not run; options the figures do not depend on are not checked). Exits 0, or 2 for a configuration the replica would refuse'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand help; and not __fish_seen_subcommand_from status resign timing once help" -f -a "once" -d 'Manage the outcomes of run-once commands (--once NAME): once clear NAME forgets an outcome, so that the next invocation with that NAME runs its command again'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand help; and not __fish_seen_subcommand_from status resign timing once help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c singleton-exec -n "__fish_singleton_exec_using_subcommand help; and __fish_seen_subcommand_from once" -f -a "clear" -d 'Forget the outcome of a run-once command (its completion record and its attempts), so the next --once NAME invocation runs the command again. Refused while replicas wait or run under NAME (a key in its queue, or a tree marker: a runner not yet gone), unless --force. Exits 0 once cleared (also when there was nothing to clear), 1 when refused'
