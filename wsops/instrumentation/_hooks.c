/* The bundled node observer's per-frame, per-publish and per-tick hooks, compiled: the
 * untraced common case of ``NodeObserver``'s ``served``, ``fanout``, ``publish_stored`` and
 * ``flushed`` (wsops/server/observe.py, whose Python methods are the reference and the
 * fallback).
 *
 * Why: a call of a Python method costs ~1,200-1,700 instructions on CPython 3.11 before its
 * body does anything (bench/corecost.py, the observer's hooks taken out one at a time), and
 * the core makes three of them per publish and one per tick. These objects are called the
 * same way (the vectorcall protocol: no argument tuple) and do the counting in C; whatever
 * concerns a traced publish, or an error code, they hand to the Python callable they were
 * given. Called before ``__init__`` they raise TypeError (no vectorcall function yet).
 *
 * They hold bound methods of the observer that holds them (a reference cycle), so they take
 * part in garbage collection.
 */
#include "_counting.h"
#include <stddef.h>

static PyObject *s_frame, *s_accepted_at, *s_traceparent;

static int exact_args(const char *name, Py_ssize_t nargsf, PyObject *kwnames, Py_ssize_t want)
{
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    if (n == want && (kwnames == NULL || PyTuple_GET_SIZE(kwnames) == 0))
        return 0;
    PyErr_Format(PyExc_TypeError, "%s takes %zd positional arguments (%zd given)", name, want,
                 n);
    return -1;
}

static Counts *as_counts(PyObject *o, const char *what)
{
    if (PyObject_TypeCheck(o, &CountsType) && ((Counts *)o)->exemplars != NULL)
        return (Counts *)o;
    PyErr_Format(PyExc_TypeError, "%s must be an initialised Counts, not %R", what, o);
    return NULL;
}

/* -- OpTimer(hists, on_error)(op, started, code) ----------------------------------------- */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *hists;     /* op -> Counts */
    PyObject *on_error;  /* on_error(op, code): a request answered with an error */
} OpTimer;

static PyObject *OpTimer_call(OpTimer *self, PyObject *const *args, size_t nargsf,
                              PyObject *kwnames)
{
    double started, now;
    if (exact_args("served", (Py_ssize_t)nargsf, kwnames, 3) < 0)
        return NULL;
    PyObject *h = PyDict_GetItemWithError(self->hists, args[0]);
    if (h == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetObject(PyExc_KeyError, args[0]);
        return NULL;
    }
    Counts *hist = as_counts(h, "the op's histogram");
    if (hist == NULL || as_double(args[1], &started) < 0 || perf_now(&now) < 0)
        return NULL;
    counts_add(hist, now - started, 1);
    if (args[2] == Py_None)
        Py_RETURN_NONE;
    PyObject *pair[2] = {args[0], args[2]};
    return PyObject_Vectorcall(self->on_error, pair, 2, NULL);
}

static int OpTimer_init(OpTimer *self, PyObject *args, PyObject *kwds)
{
    PyObject *hists, *on_error;
    if (!PyArg_ParseTuple(args, "O!O:OpTimer", &PyDict_Type, &hists, &on_error))
        return -1;
    Py_XSETREF(self->hists, Py_NewRef(hists));
    Py_XSETREF(self->on_error, Py_NewRef(on_error));
    self->vectorcall = (vectorcallfunc)OpTimer_call;
    return 0;
}

/* -- FanoutCounter(size, delivered, traced)(msg, subscribers) ---------------------------- */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *size;       /* Counts: the delivered frame's size, once per subscriber */
    PyObject *delivered;  /* list: accepted_at of each untraced publish, until the flush */
    PyObject *traced;     /* traced(msg, subscribers) for a publish with a traceparent, or None */
} FanoutCounter;

static PyObject *FanoutCounter_call(FanoutCounter *self, PyObject *const *args, size_t nargsf,
                                    PyObject *kwnames)
{
    if (exact_args("fanout", (Py_ssize_t)nargsf, kwnames, 2) < 0)
        return NULL;
    PyObject *msg = args[0];
    unsigned long long k;
    if (as_count(args[1], "fanout: subscribers", &k) < 0)
        return NULL;
    PyObject *frame = PyObject_GetAttr(msg, s_frame);
    if (frame == NULL)
        return NULL;
    Py_ssize_t n = PyObject_Size(frame);
    Py_DECREF(frame);
    if (n < 0)
        return NULL;
    counts_add((Counts *)self->size, (double)n, k);
    PyObject *accepted_at = PyObject_GetAttr(msg, s_accepted_at);
    if (accepted_at == NULL)
        return NULL;
    int accepted = PyObject_IsTrue(accepted_at);
    if (accepted <= 0) {
        Py_DECREF(accepted_at);
        return accepted < 0 ? NULL : Py_NewRef(Py_False);
    }
    if (self->traced != Py_None) {
        PyObject *traceparent = PyObject_GetAttr(msg, s_traceparent);
        if (traceparent == NULL) {
            Py_DECREF(accepted_at);
            return NULL;
        }
        int plain = traceparent == Py_None;
        Py_DECREF(traceparent);
        if (!plain) {
            Py_DECREF(accepted_at);
            return PyObject_Vectorcall(self->traced, args, 2, NULL);
        }
    }
    int failed = PyList_Append(self->delivered, accepted_at);
    Py_DECREF(accepted_at);
    return failed ? NULL : Py_NewRef(Py_True);
}

static int FanoutCounter_init(FanoutCounter *self, PyObject *args, PyObject *kwds)
{
    PyObject *size, *delivered, *traced;
    if (!PyArg_ParseTuple(args, "OO!O:FanoutCounter", &size, &PyList_Type, &delivered, &traced)
        || as_counts(size, "size") == NULL)
        return -1;
    Py_XSETREF(self->size, Py_NewRef(size));
    Py_XSETREF(self->delivered, Py_NewRef(delivered));
    Py_XSETREF(self->traced, Py_NewRef(traced));
    self->vectorcall = (vectorcallfunc)FanoutCounter_call;
    return 0;
}

/* -- StoredTimer(latency, traced)(handle, msg, started, client) -------------------------- */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *latency;  /* Counts: the broker's publish latency */
    PyObject *traced;   /* traced(handle, msg, started, client) for a traced publish */
} StoredTimer;

static PyObject *StoredTimer_call(StoredTimer *self, PyObject *const *args, size_t nargsf,
                                  PyObject *kwnames)
{
    double started, now;
    if (exact_args("publish_stored", (Py_ssize_t)nargsf, kwnames, 4) < 0)
        return NULL;
    if (args[0] != Py_None)
        return PyObject_Vectorcall(self->traced, args, 4, NULL);
    if (as_double(args[2], &started) < 0 || perf_now(&now) < 0)
        return NULL;
    counts_add((Counts *)self->latency, now - started, 1);
    Py_RETURN_NONE;
}

static int StoredTimer_init(StoredTimer *self, PyObject *args, PyObject *kwds)
{
    PyObject *latency, *traced;
    if (!PyArg_ParseTuple(args, "OO:StoredTimer", &latency, &traced)
        || as_counts(latency, "latency") == NULL)
        return -1;
    Py_XSETREF(self->latency, Py_NewRef(latency));
    Py_XSETREF(self->traced, Py_NewRef(traced));
    self->vectorcall = (vectorcallfunc)StoredTimer_call;
    return 0;
}

/* -- FlushTimer(latency, delivered, delivered_traced, traced)() ------------------------- */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *latency;           /* Counts: publish accepted to frame written */
    PyObject *delivered;         /* list: accepted_at of the tick's untraced publishes */
    PyObject *delivered_traced;  /* list: the tick's traced ones, for ``traced`` */
    PyObject *traced;            /* traced(now): ends their spans, keeps their exemplars */
} FlushTimer;

static PyObject *FlushTimer_call(FlushTimer *self, PyObject *const *args, size_t nargsf,
                                 PyObject *kwnames)
{
    double now;
    if (exact_args("flushed", (Py_ssize_t)nargsf, kwnames, 0) < 0)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(self->delivered);
    int traced = PyList_GET_SIZE(self->delivered_traced) > 0;
    if (n == 0 && !traced)
        Py_RETURN_NONE;
    if (wall_now(&now) < 0)
        return NULL;
    if (n > 0) {
        PyObject **items = ((PyListObject *)self->delivered)->ob_item;
        if (counts_add_elapsed((Counts *)self->latency, now, items, n) < 0
            || PyList_SetSlice(self->delivered, 0, n, NULL) < 0)
            return NULL;
    }
    if (!traced)
        Py_RETURN_NONE;
    PyObject *when = PyFloat_FromDouble(now);
    if (when == NULL)
        return NULL;
    PyObject *result = PyObject_Vectorcall(self->traced, &when, 1, NULL);
    Py_DECREF(when);
    return result;
}

static int FlushTimer_init(FlushTimer *self, PyObject *args, PyObject *kwds)
{
    PyObject *latency, *delivered, *delivered_traced, *traced;
    if (!PyArg_ParseTuple(args, "OO!O!O:FlushTimer", &latency, &PyList_Type, &delivered,
                          &PyList_Type, &delivered_traced, &traced)
        || as_counts(latency, "latency") == NULL)
        return -1;
    Py_XSETREF(self->latency, Py_NewRef(latency));
    Py_XSETREF(self->delivered, Py_NewRef(delivered));
    Py_XSETREF(self->delivered_traced, Py_NewRef(delivered_traced));
    Py_XSETREF(self->traced, Py_NewRef(traced));
    self->vectorcall = (vectorcallfunc)FlushTimer_call;
    return 0;
}

/* -- what the four share: up to four references, collected as a cycle ------------------- */

#define HOOK_REFS 4

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *refs[HOOK_REFS];
} Hook;

static int Hook_traverse(Hook *self, visitproc visit, void *arg)
{
    for (int i = 0; i < HOOK_REFS; i++)
        Py_VISIT(self->refs[i]);
    return 0;
}

static int Hook_clear(Hook *self)
{
    for (int i = 0; i < HOOK_REFS; i++)
        Py_CLEAR(self->refs[i]);
    return 0;
}

static void Hook_dealloc(Hook *self)
{
    PyObject_GC_UnTrack(self);
    Hook_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

#define HOOK_TYPE(NAME, DOC)                                                                  \
    static PyTypeObject NAME##Type = {                                                        \
        PyVarObject_HEAD_INIT(NULL, 0)                                                        \
        .tp_name = "wsops.instrumentation._counting." #NAME,                                  \
        .tp_doc = DOC,                                                                        \
        .tp_basicsize = sizeof(Hook),                                                         \
        .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,     \
        .tp_vectorcall_offset = offsetof(Hook, vectorcall),                                   \
        .tp_call = PyVectorcall_Call,                                                         \
        .tp_new = PyType_GenericNew,                                                          \
        .tp_init = (initproc)NAME##_init,                                                     \
        .tp_dealloc = (destructor)Hook_dealloc,                                               \
        .tp_traverse = (traverseproc)Hook_traverse,                                           \
        .tp_clear = (inquiry)Hook_clear,                                                      \
    }

HOOK_TYPE(OpTimer, "served(op, started, code): the op's duration in ``hists[op]`` since "
                   "``started`` (time.perf_counter); ``on_error(op, code)`` when code is not "
                   "None.");
HOOK_TYPE(FanoutCounter, "fanout(msg, subscribers): the frame's size per subscriber; an "
                         "untraced publish's accepted_at kept for the flush, a traced one "
                         "handed to ``traced``.");
HOOK_TYPE(FlushTimer, "flushed(): the tick's untraced publishes' latency, accepted to written "
                      "(time.time()); the traced ones handed to ``traced(now)``.");
HOOK_TYPE(StoredTimer, "publish_stored(handle, msg, started, client): the broker's latency "
                       "of an untraced publish; a traced one (a handle) handed to ``traced``.");

int add_hooks(PyObject *module)
{
    /* Each hook's fields are its Hook.refs, in order (checked when compiled, not per call). */
    const size_t ref = sizeof(PyObject *);
    Py_BUILD_ASSERT(offsetof(OpTimer, hists) == offsetof(Hook, refs));
    Py_BUILD_ASSERT(offsetof(FanoutCounter, traced) == offsetof(Hook, refs) + 2 * ref);
    Py_BUILD_ASSERT(offsetof(StoredTimer, traced) == offsetof(Hook, refs) + ref);
    Py_BUILD_ASSERT(offsetof(FlushTimer, traced) == offsetof(Hook, refs) + 3 * ref);
    Py_BUILD_ASSERT(sizeof(OpTimer) <= sizeof(Hook) && sizeof(StoredTimer) <= sizeof(Hook));
    Py_BUILD_ASSERT(sizeof(FanoutCounter) <= sizeof(Hook) && sizeof(FlushTimer) == sizeof(Hook));
    if (!(s_frame = PyUnicode_InternFromString("frame"))
        || !(s_accepted_at = PyUnicode_InternFromString("accepted_at"))
        || !(s_traceparent = PyUnicode_InternFromString("traceparent")))
        return -1;
    PyTypeObject *types[] = {&OpTimerType, &FanoutCounterType, &StoredTimerType, &FlushTimerType};
    for (int i = 0; i < 4; i++)
        if (PyModule_AddType(module, types[i]) < 0)
            return -1;
    return 0;
}
