/*
 * The process of a task's network sandbox container: it holds the network
 * namespace the task's container joins (`--network container:<sandbox>`),
 * so that the overlay interfaces are in place before the task's own
 * process starts. It does nothing else: it sleeps, reaps any child handed
 * to it, and exits on SIGTERM or SIGINT (as PID 1 it would ignore them
 * without handlers). Linked statically: the image holds only this file.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
    (void)sig;
    _exit(0);
}

static void on_child(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction stop = {.sa_handler = on_stop};
    struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP};
    sigaction(SIGTERM, &stop, NULL);
    sigaction(SIGINT, &stop, NULL);
    sigaction(SIGCHLD, &child, NULL);
    for (;;) {
        pause();
    }
}
