/*
 * xcpu_wake: the Linux baseline of `cargo xtask bench smp` (see xtask/src/bench_smp.rs),
 * built on the host with `gcc -O2 -pthread`. The same measure as Rhea's `bench-smp` app:
 *
 *   xcpu_wake GIVER_CPU WAITER_CPU LOOPS
 *
 * A giver thread pinned to GIVER_CPU stores CLOCK_MONOTONIC and posts a POSIX semaphore a
 * waiter pinned to WAITER_CPU waits on (a futex wake); the waiter takes the time on waking,
 * then posts a second semaphore back. Both threads SCHED_OTHER, like Rhea's process. Output
 * (parsed by xtask): `RESULT wake p50_ns=N p99_ns=N max_ns=N samples=N`.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static sem_t go, back;
static _Atomic long sent;
static long loops, *lat;
static int giver_cpu, waiter_cpu;

static long now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000L + t.tv_nsec;
}

static int pin(int cpu)
{
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	return pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}

static void *waiter(void *arg)
{
	(void)arg;
	if (pin(waiter_cpu) != 0) {
		fprintf(stderr, "xcpu_wake: cannot pin to CPU %d\n", waiter_cpu);
		exit(2);
	}
	for (long i = 0; i < loops; i++) {
		sem_wait(&go);
		lat[i] = now_ns() - atomic_load_explicit(&sent, memory_order_acquire);
		sem_post(&back);
	}
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: xcpu_wake GIVER_CPU WAITER_CPU LOOPS\n");
		return 2;
	}
	giver_cpu = atoi(argv[1]);
	waiter_cpu = atoi(argv[2]);
	loops = atol(argv[3]);
	if (loops < 1 || !(lat = malloc(loops * sizeof *lat))) {
		fprintf(stderr, "xcpu_wake: bad LOOPS %s\n", argv[3]);
		return 2;
	}
	if (pin(giver_cpu) != 0) {
		fprintf(stderr, "xcpu_wake: cannot pin to CPU %d\n", giver_cpu);
		return 2;
	}
	sem_init(&go, 0, 0);
	sem_init(&back, 0, 0);
	pthread_t t;
	if (pthread_create(&t, NULL, waiter, NULL) != 0) {
		fprintf(stderr, "xcpu_wake: pthread_create failed\n");
		return 2;
	}
	for (long i = 0; i < loops; i++) {
		atomic_store_explicit(&sent, now_ns(), memory_order_release);
		sem_post(&go);
		sem_wait(&back);
	}
	pthread_join(t, NULL);
	qsort(lat, loops, sizeof *lat, cmp);
	printf("RESULT wake p50_ns=%ld p99_ns=%ld max_ns=%ld samples=%ld\n", lat[loops / 2],
	       lat[(loops - 1) * 99 / 100], lat[loops - 1], loops);
	return 0;
}
