/*
 * The recorder's clock.
 *
 * Two CLOCK_MONOTONIC reads per acquire/release pair were the largest single cost of the hot
 * path (about 40 ns of it). Where the kernel itself keeps time with the TSC (its clocksource is
 * "tsc", which it selects only when the TSC is invariant and synchronised across CPUs: the
 * cpuinfo flags constant_tsc and nonstop_tsc), the hot path reads the TSC instead (about 9 ns
 * here) and the flusher converts ticks to CLOCK_MONOTONIC nanoseconds: between two calibration
 * pairs (ticks, CLOCK_MONOTONIC) taken one flush apart, the conversion is linear, which is what
 * the kernel does too (up to its NTP slew within the interval). Elsewhere (no TSC, another
 * clocksource, TRACEDSYNC_CLOCK=monotonic) ticks are CLOCK_MONOTONIC nanoseconds.
 */
#include "native.h"
#include <time.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>

int ts_clock_is_tsc = 0;
ts_calib ts_current_calib = {0, 0, 1.0};

int64_t
ts_mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

uint64_t
ts_ticks_slow(void)
{
    return (uint64_t)ts_mono_ns();
}

static int
file_has(const char *path, const char *word)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    char line[4096];
    int found = 0;
    size_t wlen = strlen(word);
    while (!found && fgets(line, sizeof line, f) != NULL) {
        char *p = line;
        while ((p = strstr(p, word)) != NULL) {
            char after = p[wlen];
            char before = p == line ? ' ' : p[-1];
            if ((before == ' ' || before == '\t' || before == ':') &&
                (after == ' ' || after == '\n' || after == '\0' || after == '\t')) {
                found = 1;
                break;
            }
            p += wlen;
        }
    }
    fclose(f);
    return found;
}

#if defined(__x86_64__) || defined(__i386__)
static uint64_t
tsc_now(void)
{
    return __builtin_ia32_rdtsc();
}
#endif

/* ns per tick, measured over `span_ns` of CLOCK_MONOTONIC. */
static double
measure_rate(int64_t span_ns)
{
#if defined(__x86_64__) || defined(__i386__)
    int64_t n0 = ts_mono_ns();
    uint64_t t0 = tsc_now();
    int64_t n1;
    uint64_t t1;
    do {
        n1 = ts_mono_ns();
        t1 = tsc_now();
    } while (n1 - n0 < span_ns);
    if (t1 <= t0) {
        return 0.0;
    }
    return (double)(n1 - n0) / (double)(t1 - t0);
#else
    (void)span_ns;
    return 0.0;
#endif
}

int
ts_clock_init(void)
{
    ts_clock_is_tsc = 0;
    const char *want = getenv("TRACEDSYNC_CLOCK");
#if defined(__x86_64__) || defined(__i386__)
    if (want == NULL || strcmp(want, "monotonic") != 0) {
        if (file_has("/sys/devices/system/clocksource/clocksource0/current_clocksource", "tsc")
            && file_has("/proc/cpuinfo", "constant_tsc")
            && file_has("/proc/cpuinfo", "nonstop_tsc")) {
            double rate = measure_rate(2000000);  /* 2 ms at import; refined at each flush */
            if (rate > 0.0 && rate < 10.0) {
                ts_clock_is_tsc = 1;
                ts_current_calib.ns_per_tick = rate;
            }
        }
    }
#else
    (void)want;
#endif
    if (!ts_clock_is_tsc) {
        ts_current_calib.ns_per_tick = 1.0;
    }
    ts_calib_now(&ts_current_calib);
    return 0;
}

/* A calibration pair taken now, keeping the rate of `c` (refined by the caller). */
void
ts_calib_now(ts_calib *c)
{
    if (!ts_clock_is_tsc) {
        c->base_ticks = 0;
        c->base_ns = 0;
        c->ns_per_tick = 1.0;
        return;
    }
#if defined(__x86_64__) || defined(__i386__)
    /* The pair closest together of three tries: a preemption between the two reads would
     * skew the base. */
    int64_t best_gap = INT64_MAX;
    for (int i = 0; i < 3; i++) {
        uint64_t a = tsc_now();
        int64_t n = ts_mono_ns();
        uint64_t b = tsc_now();
        int64_t gap = (int64_t)(b - a);
        if (gap < best_gap) {
            best_gap = gap;
            c->base_ticks = a + (b - a) / 2;
            c->base_ns = n;
        }
    }
#endif
}
