/* udp-echo: the demo image's UDP service (busybox has no UDP server).
 * Usage: udp-echo [PORT]  (default 53)
 * Answers every datagram with "<hostname> <payload>", so a test can tell
 * which task answered through a published UDP port. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 53;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("udp-echo");
        return 1;
    }
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    printf("udp-echo: %s on port %d\n", host, port);
    fflush(stdout);
    for (;;) {
        char in[1024], out[1400];
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        ssize_t n = recvfrom(fd, in, sizeof in - 1, 0, (struct sockaddr *)&peer, &len);
        if (n < 0)
            continue;
        in[n] = 0;
        int m = snprintf(out, sizeof out, "%s %s", host, in);
        sendto(fd, out, (size_t)m, 0, (struct sockaddr *)&peer, len);
    }
}
