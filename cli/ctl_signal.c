/* SIGINT and SIGTERM for the commands that run until stopped (watch, lease
 * keepalive --every): a handler that only records the signal, installed
 * without SA_RESTART so that a sleep or a poll returns early. The flag is
 * the one piece of process-wide mutable state craftctl has: a signal
 * handler can reach nothing else. */
#include "ctl.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    interrupted = sig;
}

int ctl_catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
        return -1;
    return 0;
}

bool ctl_interrupted(void)
{
    return interrupted != 0;
}

void ctl_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (!interrupted && nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}
