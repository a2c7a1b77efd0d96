/*
 * pingpong: context-switch costs inside the Linux guest baseline of `cargo xtask bench
 * linux-sched` (see xtask/src/linux_guest.rs). Built on the host with
 * `gcc -O2 -static -pthread`.
 *
 *   pingpong [ROUND_TRIPS]     (default 10000)
 *
 * Two threads, both pinned to CPU 0 and both SCHED_FIFO at the same priority (SCHED_OTHER
 * if SCHED_FIFO is refused, which is reported), measured with clock_gettime(CLOCK_MONOTONIC):
 *
 *   yield switch      the threads take turns through a shared `turn` word; a thread whose
 *                     turn it is not calls sched_yield(). One hand-off = one switch.
 *   semaphore ping-pong  thread A posts s1 and waits on s0, thread B waits on s1 and posts
 *                     s0; every hand-off blocks one thread and wakes the other.
 *
 * Each test runs ROUNDS times after a warm-up; the median of the rounds is reported as ns
 * per one-way hand-off. Output lines (parsed by xtask):
 *
 *   RESULT sched_policy fifo|other
 *   RESULT yield_switch_ns <float>
 *   RESULT sem_pingpong_ns <float>
 *   NOTE <free text>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROUNDS 5
#define FIFO_PRIORITY 50

static long round_trips = 10000;
static int use_fifo = 1;

static pthread_barrier_t start_barrier;
/* Set when the second thread could not be created: the first one returns after the barrier. */
static _Atomic int abort_pair;
static struct timespec t_start, t_end;

/* yield test */
static _Atomic int turn;
static _Atomic long extra_yields;

/* semaphore test */
static sem_t sem_a, sem_b;

static double elapsed_ns(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) * 1e9 + (double)(b->tv_nsec - a->tv_nsec);
}

static void *yield_thread(void *arg)
{
	int me = (int)(long)arg;
	long extra = 0;
	pthread_barrier_wait(&start_barrier);
	if (atomic_load(&abort_pair))
		return NULL;
	if (me == 0)
		clock_gettime(CLOCK_MONOTONIC, &t_start);
	for (long k = 0; k < round_trips; k++) {
		while (atomic_load_explicit(&turn, memory_order_acquire) != me) {
			sched_yield();
			extra++;
		}
		atomic_store_explicit(&turn, 1 - me, memory_order_release);
		sched_yield();
	}
	if (me == 1)
		clock_gettime(CLOCK_MONOTONIC, &t_end);
	atomic_fetch_add(&extra_yields, extra);
	return NULL;
}

static void *sem_thread(void *arg)
{
	int me = (int)(long)arg;
	pthread_barrier_wait(&start_barrier);
	if (atomic_load(&abort_pair))
		return NULL;
	if (me == 0) {
		clock_gettime(CLOCK_MONOTONIC, &t_start);
		for (long k = 0; k < round_trips; k++) {
			sem_post(&sem_b);
			sem_wait(&sem_a);
		}
		clock_gettime(CLOCK_MONOTONIC, &t_end);
	} else {
		for (long k = 0; k < round_trips; k++) {
			sem_wait(&sem_b);
			sem_post(&sem_a);
		}
	}
	return NULL;
}

/* Starts two pinned threads running `body`, waits for both. Returns 0 or an errno. */
static int run_pair(void *(*body)(void *))
{
	pthread_t th[2];
	pthread_attr_t attr;
	cpu_set_t cpu0;
	int err;

	CPU_ZERO(&cpu0);
	CPU_SET(0, &cpu0);
	pthread_attr_init(&attr);
	pthread_attr_setaffinity_np(&attr, sizeof cpu0, &cpu0);
	if (use_fifo) {
		struct sched_param sp = { .sched_priority = FIFO_PRIORITY };
		pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
		pthread_attr_setschedpolicy(&attr, SCHED_FIFO);
		pthread_attr_setschedparam(&attr, &sp);
	}
	atomic_store(&abort_pair, 0);
	pthread_barrier_init(&start_barrier, NULL, 2);
	err = pthread_create(&th[0], &attr, body, (void *)0L);
	if (err == 0) {
		err = pthread_create(&th[1], &attr, body, (void *)1L);
		if (err != 0) {
			/* Release thread 0 from the barrier and tell it to return at once. */
			atomic_store(&abort_pair, 1);
			pthread_barrier_wait(&start_barrier);
		}
		pthread_join(th[0], NULL);
		if (err == 0)
			pthread_join(th[1], NULL);
	}
	pthread_barrier_destroy(&start_barrier);
	pthread_attr_destroy(&attr);
	return err;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Runs one test ROUNDS times (plus a warm-up); returns the median ns per hand-off, < 0 on error. */
static double measure(const char *name, void *(*body)(void *), void (*reset)(void))
{
	double ns[ROUNDS];
	long saved = round_trips;

	/* Round -1 is a warm-up with a tenth of the work, not measured. */
	for (int r = -1; r < ROUNDS; r++) {
		round_trips = r < 0 && saved >= 10 ? saved / 10 : saved;
		reset();
		int err = run_pair(body);
		if (err != 0) {
			printf("NOTE %s: pthread_create failed: %s\n", name, strerror(err));
			round_trips = saved;
			return -1;
		}
		if (r < 0)
			continue;
		/* 2 * round_trips hand-offs, the last one (back to nobody) excluded. */
		ns[r] = elapsed_ns(&t_start, &t_end) / (double)(2 * round_trips - 1);
	}
	qsort(ns, ROUNDS, sizeof ns[0], cmp_double);
	printf("NOTE %s ns per hand-off, %d rounds of %ld round trips: min %.1f median %.1f max %.1f\n",
	       name, ROUNDS, round_trips, ns[0], ns[ROUNDS / 2], ns[ROUNDS - 1]);
	return ns[ROUNDS / 2];
}

static void reset_yield(void)
{
	atomic_store(&turn, 0);
	atomic_store(&extra_yields, 0);
}

static void reset_sem(void)
{
	sem_destroy(&sem_a);
	sem_destroy(&sem_b);
	sem_init(&sem_a, 0, 0);
	sem_init(&sem_b, 0, 0);
}

int main(int argc, char **argv)
{
	if (argc > 1) {
		round_trips = strtol(argv[1], NULL, 10);
		if (round_trips < 1) {
			fprintf(stderr, "usage: pingpong [ROUND_TRIPS >= 1]\n");
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	sem_init(&sem_a, 0, 0);
	sem_init(&sem_b, 0, 0);

	/* Probe SCHED_FIFO on the main thread; fall back to SCHED_OTHER if refused. */
	{
		struct sched_param sp = { .sched_priority = FIFO_PRIORITY };
		int err = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
		if (err != 0) {
			use_fifo = 0;
			printf("NOTE SCHED_FIFO refused (%s): falling back to SCHED_OTHER; "
			       "figures are not comparable with FIFO ones\n", strerror(err));
		} else {
			/* The main thread only waits; keep it out of the way at normal policy. */
			struct sched_param zero = { .sched_priority = 0 };
			pthread_setschedparam(pthread_self(), SCHED_OTHER, &zero);
		}
	}
	printf("RESULT sched_policy %s\n", use_fifo ? "fifo" : "other");

	double y = measure("yield_switch", yield_thread, reset_yield);
	if (y >= 0) {
		printf("RESULT yield_switch_ns %.1f\n", y);
		/* One is expected: thread 1 usually leaves the barrier first and finds it is not its turn. */
		if (atomic_load(&extra_yields) > 1)
			printf("NOTE yield_switch: %ld sched_yield calls in the last round did not switch\n",
			       (long)atomic_load(&extra_yields));
	} else {
		printf("NOTE yield_switch failed\n");
	}
	double s = measure("sem_pingpong", sem_thread, reset_sem);
	if (s >= 0)
		printf("RESULT sem_pingpong_ns %.1f\n", s);
	else
		printf("NOTE sem_pingpong failed\n");
	return 0;
}
