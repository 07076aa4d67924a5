/* wsops.instrumentation._counting: what _counting.c (the ``Counts`` type), _hooks.c (the
 * node observer's compiled hooks) and _module.c (the module) share. */
#ifndef WSOPS_COUNTING_H
#define WSOPS_COUNTING_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define MAX_BOUNDS 64

typedef struct {
    PyObject_HEAD
    Py_ssize_t n;                             /* bounds */
    double bounds[MAX_BOUNDS];                /* inclusive upper bounds (le), increasing */
    unsigned long long counts[MAX_BOUNDS + 1]; /* the last one: above every bound (+Inf) */
    double sum;
    PyObject *bounds_list;                    /* the bounds as given (sizes stay ints) */
    PyObject *exemplars;                      /* bucket -> (trace id, value, at) */
} Counts;

static inline int perf_now(double *out)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyTime_t t;
    if (PyTime_PerfCounter(&t) < 0)
        return -1;
    *out = PyTime_AsSecondsDouble(t);
#else
    *out = _PyTime_AsSecondsDouble(_PyTime_GetPerfCounter());
#endif
    return 0;
}

/* ``time.time()``'s clock. */
static inline int wall_now(double *out)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyTime_t t;
    if (PyTime_Time(&t) < 0)
        return -1;
    *out = PyTime_AsSecondsDouble(t);
#else
    *out = _PyTime_AsSecondsDouble(_PyTime_GetSystemClock());
#endif
    return 0;
}

/* The bucket of ``v``: the first bound >= v (bisect_left), 0 for NaN as bisect gives. */
static inline Py_ssize_t bucket(const Counts *self, double v)
{
    Py_ssize_t i = 0;
    if (v <= self->bounds[0])
        return 0;
    while (i < self->n && v > self->bounds[i])
        i++;
    return i;
}

static inline int as_double(PyObject *o, double *out)
{
    if (PyFloat_CheckExact(o)) {
        *out = PyFloat_AS_DOUBLE(o);
        return 0;
    }
    *out = PyFloat_AsDouble(o);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* ``k`` observations of ``v``. */
static inline void counts_add(Counts *self, double v, unsigned long long k)
{
    self->counts[bucket(self, v)] += k;
    self->sum += v * (double)k;
}

/* ``o`` as a count of observations (an int >= 0); -1 with ValueError or TypeError set. */
static inline int as_count(PyObject *o, const char *what, unsigned long long *out)
{
    long long k = PyLong_AsLongLong(o);
    if (k == -1 && PyErr_Occurred())
        return -1;
    if (k < 0) {
        PyErr_Format(PyExc_ValueError, "%s must be >= 0", what);
        return -1;
    }
    *out = (unsigned long long)k;
    return 0;
}

/* One observation of ``now - start`` per start of ``items``: all numbers, or nothing counted
 * (-1 with the error set). */
static inline int counts_add_elapsed(Counts *self, double now, PyObject *const *items,
                                     Py_ssize_t n)
{
    double start, total = 0.0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (as_double(items[i], &start) < 0)
            return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        (void)as_double(items[i], &start);  /* converted once above: cannot fail */
        double v = now - start;
        self->counts[bucket(self, v)]++;
        total += v;
    }
    self->sum += total;
    return 0;
}

extern PyTypeObject CountsType;

/* Add ``Counts`` and MAX_BOUNDS (_counting.c), the hook types (_hooks.c) to the module (_module.c);
 * -1 on error. */
int add_counts(PyObject *module);
int add_hooks(PyObject *module);

#endif
