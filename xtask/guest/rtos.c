/* The POSIX side of `cargo xtask bench rtos`: the tests of apps/bench-rtos with pthreads,
 * printed in the same format, `RESULT rtos <test> <median> <min> <max>` (operations per
 * period; higher is better).
 *
 *   rtos [periods=N] [period_ms=M]      (defaults 5 and 200)
 *
 * A reporter (the main thread, SCHED_FIFO 60 when permitted) sleeps to absolute deadlines
 * (clock_nanosleep, CLOCK_MONOTONIC) one period apart and reads the test's counter at each;
 * then it raises a stop flag, releases blocked threads and joins them. Threads get SCHED_FIFO
 * priorities (pthread_attr_setschedparam, explicit scheduling) when the first attempt is
 * permitted, else everything runs SCHED_OTHER and the conditions line says so (the priority
 * structure of `preempt` and `irq_preempt` then does not hold).
 *
 *   basic        one thread: 32 rounds of a serial xor-shift-multiply on a uint32_t per op
 *                (calibration of the CPU's speed and of the two compilers);
 *   coop         5 threads of one priority: counter++ then sched_yield(); ops = sum;
 *   preempt      5 threads of priorities 20..24 chained by sem_t: the lowest posts the
 *                second's, which preempts it, ... up to the top, which counts and waits
 *                again; one op = one chain cycle;
 *   irq          one thread raises SIGUSR1 to itself (pthread_kill(pthread_self())); the
 *                handler counts; one op = one signal;
 *   irq_preempt  the handler sem_post()s a semaphore a SCHED_FIFO 50 thread waits on; one op
 *                = one wake-up of that thread;
 *   msg          one thread mq_send()s a 16-byte message to a POSIX message queue and
 *                mq_receive()s it back (a pipe, write then read, when mq_open is refused:
 *                the conditions line says which);
 *   sem          one thread: sem_wait() then sem_post() on an uncontended sem_t;
 *   mutex        one thread: pthread_mutex_lock() then pthread_mutex_unlock() on an
 *                uncontended mutex (PTHREAD_PRIO_INHERIT, as Rhea's mutex inherits);
 *   events       one thread sets a flag and waits for it, clearing it: POSIX has no event
 *                flags, so the usual idiom — a flag word under a mutex with a condition
 *                variable (set: lock, or in, broadcast, unlock; wait: lock, wait while
 *                unset, clear, unlock); one op = both;
 *   alloc        one thread: malloc(128) then free();
 *   pool         one thread: a 128-byte block from a pool of 16 (a free list carved once, under
 *                a pthread_mutex_t: the usual POSIX fixed-block pool, as there is no standard
 *                one) and back; one op = both.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define REPORTER 60
#define WORKER 30
#define CHAIN 5
#define MAX_THREADS 8

static int periods = 5;
static long period_ms = 200;
static int fifo = 1; /* cleared when SCHED_FIFO is refused */

static atomic_int stop;
static atomic_ulong ops;

static void count(void) { atomic_fetch_add_explicit(&ops, 1, memory_order_relaxed); }
static int stopping(void) { return atomic_load_explicit(&stop, memory_order_relaxed); }

static void die(const char *what, int err) {
    fprintf(stderr, "rtos: %s: %s\n", what, strerror(err));
    exit(2);
}

static pthread_t threads[MAX_THREADS];
static int nthreads;

static void spawn(void *(*fn)(void *), void *arg, int prio) {
    pthread_attr_t a;
    pthread_attr_init(&a);
    if (fifo) {
        struct sched_param sp = {.sched_priority = prio};
        pthread_attr_setinheritsched(&a, PTHREAD_EXPLICIT_SCHED);
        pthread_attr_setschedpolicy(&a, SCHED_FIFO);
        pthread_attr_setschedparam(&a, &sp);
    }
    int err = pthread_create(&threads[nthreads], &a, fn, arg);
    if (err == EPERM && fifo) {
        fifo = 0;
        pthread_attr_destroy(&a);
        spawn(fn, arg, prio);
        return;
    }
    if (err)
        die("pthread_create", err);
    pthread_attr_destroy(&a);
    nthreads++;
}

static int cmp_ulong(const void *a, const void *b) {
    unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;
    return x < y ? -1 : x > y;
}

/* The reporter loop over the spawned threads, then stop, release, join, print. */
static void measure(const char *name, void (*release)(void)) {
    unsigned long counts[periods], last = atomic_load(&ops);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (int i = 0; i < periods; i++) {
        next.tv_nsec += period_ms % 1000 * 1000000;
        next.tv_sec += period_ms / 1000 + next.tv_nsec / 1000000000;
        next.tv_nsec %= 1000000000;
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
            ;
        unsigned long c = atomic_load(&ops);
        counts[i] = c - last;
        last = c;
    }
    atomic_store(&stop, 1);
    if (release)
        release();
    for (int i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    nthreads = 0;
    atomic_store(&stop, 0);
    atomic_store(&ops, 0);
    qsort(counts, periods, sizeof counts[0], cmp_ulong);
    printf("RESULT rtos %s %lu %lu %lu\n", name, counts[periods / 2], counts[0],
           counts[periods - 1]);
    fflush(stdout);
}

static void *basic_thread(void *arg) {
    (void)arg;
    uint32_t acc = 1;
    while (!stopping()) {
        for (int i = 0; i < 32; i++)
            acc = (acc ^ (acc >> 13)) * 0x5bd1e995u;
        __asm__ volatile("" : "+r"(acc));
        count();
    }
    return NULL;
}

static void *coop_thread(void *arg) {
    (void)arg;
    while (!stopping()) {
        count();
        sched_yield();
    }
    return NULL;
}

static sem_t chain[CHAIN];

/* sem_post on a semaphore already at 1 would count past Rhea's max of 1: post only at 0. */
static void give1(sem_t *s) {
    int v;
    sem_getvalue(s, &v);
    if (v == 0)
        sem_post(s);
}

static void *chain0_thread(void *arg) {
    (void)arg;
    for (;;) {
        int s = stopping();
        give1(&chain[1]);
        if (s)
            break;
    }
    return NULL;
}

static void *chain_thread(void *arg) {
    int i = (int)(intptr_t)arg;
    for (;;) {
        while (sem_wait(&chain[i]) == -1 && errno == EINTR)
            ;
        int s = stopping();
        if (i + 1 < CHAIN)
            give1(&chain[i + 1]);
        else if (!s)
            count();
        if (s)
            break;
    }
    return NULL;
}

static void on_sig_count(int sig) {
    (void)sig;
    count();
}

static sem_t irq_sem;

static void on_sig_post(int sig) {
    (void)sig;
    sem_post(&irq_sem);
}

static void *raiser_thread(void *arg) {
    (void)arg;
    pthread_t me = pthread_self();
    while (!stopping())
        pthread_kill(me, SIGUSR1);
    return NULL;
}

static void *irq_waiter_thread(void *arg) {
    (void)arg;
    for (;;) {
        while (sem_wait(&irq_sem) == -1 && errno == EINTR)
            ;
        if (stopping())
            break;
        count();
    }
    return NULL;
}

static void release_irq_waiter(void) { sem_post(&irq_sem); }

static void set_handler(void (*h)(int)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGUSR1, &sa, NULL))
        die("sigaction", errno);
}

static mqd_t mq = (mqd_t)-1;
static int pipefd[2] = {-1, -1};

static void *msg_thread(void *arg) {
    (void)arg;
    char m[16] = {0};
    while (!stopping()) {
        m[0]++;
        if (mq != (mqd_t)-1) {
            if (mq_send(mq, m, sizeof m, 0))
                die("mq_send", errno);
            if (mq_receive(mq, m, sizeof m, NULL) != (ssize_t)sizeof m)
                die("mq_receive", errno);
        } else {
            if (write(pipefd[1], m, sizeof m) != (ssize_t)sizeof m)
                die("write", errno);
            if (read(pipefd[0], m, sizeof m) != (ssize_t)sizeof m)
                die("read", errno);
        }
        __asm__ volatile("" : : "r"(m) : "memory");
        count();
    }
    return NULL;
}

static sem_t sem;

static void *sem_thread(void *arg) {
    (void)arg;
    while (!stopping()) {
        sem_wait(&sem);
        sem_post(&sem);
        count();
    }
    return NULL;
}

static pthread_mutex_t mutex;
static volatile unsigned long mutex_guarded;

static void *mutex_thread(void *arg) {
    (void)arg;
    while (!stopping()) {
        pthread_mutex_lock(&mutex);
        mutex_guarded++;
        pthread_mutex_unlock(&mutex);
        count();
    }
    return NULL;
}

static pthread_mutex_t ev_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ev_cond = PTHREAD_COND_INITIALIZER;
static unsigned ev_flags;

static void *events_thread(void *arg) {
    (void)arg;
    while (!stopping()) {
        pthread_mutex_lock(&ev_mutex);
        ev_flags |= 1;
        pthread_cond_broadcast(&ev_cond);
        pthread_mutex_unlock(&ev_mutex);
        pthread_mutex_lock(&ev_mutex);
        while (!(ev_flags & 1))
            pthread_cond_wait(&ev_cond, &ev_mutex);
        ev_flags &= ~1u;
        pthread_mutex_unlock(&ev_mutex);
        count();
    }
    return NULL;
}

static void *alloc_thread(void *arg) {
    (void)arg;
    while (!stopping()) {
        void *p = malloc(128);
        __asm__ volatile("" : : "r"(p) : "memory");
        free(p);
        count();
    }
    return NULL;
}

/* The fixed-block pool: 16 blocks of 128 bytes carved from one array, a singly linked free
 * list through the blocks' first word, one mutex. */
#define POOL_BLOCKS 16
#define POOL_BLOCK_BYTES 128
union pool_block {
    union pool_block *next;
    unsigned char bytes[POOL_BLOCK_BYTES];
};
static union pool_block pool_storage[POOL_BLOCKS];
static union pool_block *pool_free;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;

static void pool_init(void) {
    for (int i = 0; i < POOL_BLOCKS; i++) {
        pool_storage[i].next = pool_free;
        pool_free = &pool_storage[i];
    }
}

static void *pool_get(void) {
    pthread_mutex_lock(&pool_lock);
    union pool_block *b = pool_free;
    if (b)
        pool_free = b->next;
    pthread_mutex_unlock(&pool_lock);
    return b;
}

static void pool_put(void *p) {
    union pool_block *b = p;
    pthread_mutex_lock(&pool_lock);
    b->next = pool_free;
    pool_free = b;
    pthread_mutex_unlock(&pool_lock);
}

static void *pool_thread(void *arg) {
    (void)arg;
    while (!stopping()) {
        void *p = pool_get();
        if (!p)
            die("pool_get", ENOMEM);
        __asm__ volatile("" : : "r"(p) : "memory");
        pool_put(p);
        count();
    }
    return NULL;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "periods=", 8))
            periods = atoi(argv[i] + 8);
        else if (!strncmp(argv[i], "period_ms=", 10))
            period_ms = atol(argv[i] + 10);
        else {
            fprintf(stderr, "usage: rtos [periods=N] [period_ms=M]\n");
            return 2;
        }
    }
    if (periods < 1 || period_ms < 1) {
        fprintf(stderr, "rtos: periods and period_ms must be positive\n");
        return 2;
    }
    struct sched_param sp = {.sched_priority = REPORTER};
    if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp))
        fifo = 0;

    /* The message queue: POSIX mq when permitted, else a pipe. */
    char name[64];
    snprintf(name, sizeof name, "/rhea-bench-rtos-%d", (int)getpid());
    struct mq_attr qa = {.mq_maxmsg = 8, .mq_msgsize = 16};
    mq = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &qa);
    const char *msg_kind = "posix-mq";
    if (mq == (mqd_t)-1) {
        if (pipe(pipefd))
            die("pipe", errno);
        msg_kind = "pipe";
    } else {
        mq_unlink(name);
    }

    /* The first spawn decides `fifo`; print the conditions after it. */
    spawn(basic_thread, NULL, WORKER);
    printf("RESULT conditions policy=%s periods=%d period_ms=%ld msg=%s pool=mutex-free-list\n",
           fifo ? "fifo" : "other", periods, period_ms, msg_kind);
    fflush(stdout);
    measure("basic", NULL);

    for (int i = 0; i < 5; i++)
        spawn(coop_thread, NULL, WORKER);
    measure("coop", NULL);

    for (int i = 0; i < CHAIN; i++)
        sem_init(&chain[i], 0, 0);
    spawn(chain0_thread, NULL, 20);
    for (int i = 1; i < CHAIN; i++)
        spawn(chain_thread, (void *)(intptr_t)i, 20 + i);
    measure("preempt", NULL);

    set_handler(on_sig_count);
    spawn(raiser_thread, NULL, WORKER);
    measure("irq", NULL);

    sem_init(&irq_sem, 0, 0);
    set_handler(on_sig_post);
    /* The raiser first, so it is joined before the waiter is released. */
    spawn(raiser_thread, NULL, WORKER);
    spawn(irq_waiter_thread, NULL, 50);
    measure("irq_preempt", release_irq_waiter);

    spawn(msg_thread, NULL, WORKER);
    measure("msg", NULL);

    sem_init(&sem, 0, 1);
    spawn(sem_thread, NULL, WORKER);
    measure("sem", NULL);

    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setprotocol(&ma, PTHREAD_PRIO_INHERIT);
    pthread_mutex_init(&mutex, &ma);
    spawn(mutex_thread, NULL, WORKER);
    measure("mutex", NULL);

    spawn(events_thread, NULL, WORKER);
    measure("events", NULL);

    spawn(alloc_thread, NULL, WORKER);
    measure("alloc", NULL);

    pool_init();
    spawn(pool_thread, NULL, WORKER);
    measure("pool", NULL);

    printf("RESULT done\n");
    return 0;
}
