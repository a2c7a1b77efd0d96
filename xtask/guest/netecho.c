/*
 * netecho: the echo server of the Linux guest in `cargo xtask bench net` (see
 * xtask/src/bench_net.rs and xtask/src/linux_guest.rs), the counterpart of the Rhea
 * appliance's echo service. Built on the host with `gcc -O2 -static -pthread`.
 *
 *   netecho [PORT]     (default 7)
 *
 * UDP: one thread answers every datagram to its sender, unchanged. The datagram
 * "QUIT netecho" ends the program (status 0) instead, so /init can power the guest off.
 * TCP: one thread accepts; each connection gets a thread that writes back everything it
 * reads until the peer closes.
 *
 * Output lines (parsed by xtask):
 *
 *   RESULT netecho_ready port=<port>     (both sockets bound and listening)
 *   NOTE <free text>                     (errors)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define QUIT "QUIT netecho"

static int udp_fd = -1;
static int tcp_fd = -1;

static int bound_socket(int type, int port)
{
    int fd = socket(AF_INET, type, 0);
    if (fd < 0) {
        printf("NOTE netecho: socket: %s\n", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        printf("NOTE netecho: bind port %d: %s\n", port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void *udp_loop(void *arg)
{
    (void)arg;
    static char buf[65536];
    for (;;) {
        struct sockaddr_in from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(udp_fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            printf("NOTE netecho: udp recvfrom: %s\n", strerror(errno));
            exit(1);
        }
        if ((size_t)n == strlen(QUIT) && memcmp(buf, QUIT, (size_t)n) == 0) {
            printf("NOTE netecho: quit\n");
            exit(0);
        }
        sendto(udp_fd, buf, (size_t)n, 0, (struct sockaddr *)&from, len);
    }
    return NULL;
}

static void *tcp_connection(void *arg)
{
    int fd = (int)(long)arg;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char *buf = malloc(65536);
    if (buf == NULL) {
        close(fd);
        return NULL;
    }
    for (;;) {
        ssize_t n = read(fd, buf, 65536);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        ssize_t off = 0;
        while (off < n) {
            ssize_t w = write(fd, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                goto done;
            off += w;
        }
    }
done:
    free(buf);
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 7;
    setvbuf(stdout, NULL, _IOLBF, 0);
    udp_fd = bound_socket(SOCK_DGRAM, port);
    tcp_fd = bound_socket(SOCK_STREAM, port);
    if (udp_fd < 0 || tcp_fd < 0)
        return 1;
    if (listen(tcp_fd, 16) != 0) {
        printf("NOTE netecho: listen: %s\n", strerror(errno));
        return 1;
    }
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, udp_loop, NULL) != 0) {
        printf("NOTE netecho: no UDP thread\n");
        return 1;
    }
    printf("RESULT netecho_ready port=%d\n", port);
    for (;;) {
        int c = accept(tcp_fd, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            printf("NOTE netecho: accept: %s\n", strerror(errno));
            return 1;
        }
        if (pthread_create(&t, &attr, tcp_connection, (void *)(long)c) != 0) {
            printf("NOTE netecho: no thread for a connection\n");
            close(c);
        }
    }
}
