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

extern PyTypeObject CountsType;

/* Add ``Counts`` and MAX_BOUNDS (_counting.c), the hook types (_hooks.c) to the module (_module.c);
 * -1 on error. */
int add_counts(PyObject *module);
int add_hooks(PyObject *module);

#endif
