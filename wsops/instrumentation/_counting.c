/* wsops.instrumentation._counting: a histogram's counts kept in C.
 *
 * The compiled twin of ``wsops/instrumentation/pycounts.py`` (same class, same behaviour; the
 * tests run both). Built by setup.py as an optional extension: without a compiler wsops falls
 * back to the Python class. Why: an update of a bucket, a sum and a clock read inline in
 * Python costs ~670 instructions more than the clock reads alone, a call of this type's
 * ``observe`` ~110 (bench/tracecost.py), and the hot paths update several histograms per
 * message (BENCHMARKS.md, issue #17).
 *
 * Counts are unsigned 64-bit integers and the sum a double; no Python object is made per
 * observation. ``observe_since`` reads the very clock of ``time.perf_counter``. Instances hold
 * no reference that can lead back to them (a list of bounds, a dict of exemplars whose values
 * are tuples of ids and floats), so the type does not take part in garbage collection.
 */
#include "_counting.h"

static PyObject *time_time;  /* time.time, for an exemplar observed without ``at`` */

static int not_ready(const Counts *self)
{
    if (self->exemplars != NULL)
        return 0;
    PyErr_SetString(PyExc_RuntimeError, "Counts.__init__ was not called");
    return 1;
}

static int Counts_init(Counts *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"bounds", NULL};
    PyObject *given, *list;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Counts", kwlist, &given))
        return -1;
    list = PySequence_List(given);
    if (list == NULL)
        return -1;
    Py_ssize_t n = PyList_GET_SIZE(list);
    if (n < 1 || n > MAX_BOUNDS) {
        PyErr_Format(PyExc_ValueError, "a histogram takes 1 to %d bounds, not %zd",
                     MAX_BOUNDS, n);
        Py_DECREF(list);
        return -1;
    }
    double bounds[MAX_BOUNDS];  /* checked whole before any field changes */
    for (Py_ssize_t i = 0; i < n; i++) {
        if (as_double(PyList_GET_ITEM(list, i), &bounds[i]) < 0) {
            Py_DECREF(list);
            return -1;
        }
        if (!(i == 0 ? bounds[0] == bounds[0] : bounds[i] > bounds[i - 1])) {
            PyErr_Format(PyExc_ValueError, "histogram bounds must increase, not %R", list);
            Py_DECREF(list);
            return -1;
        }
    }
    PyObject *exemplars = PyDict_New();
    if (exemplars == NULL) {
        Py_DECREF(list);
        return -1;
    }
    memcpy(self->bounds, bounds, sizeof(double) * (size_t)n);
    self->n = n;
    memset(self->counts, 0, sizeof self->counts);
    self->sum = 0.0;
    Py_XSETREF(self->bounds_list, list);
    Py_XSETREF(self->exemplars, exemplars);
    return 0;
}

static void Counts_dealloc(Counts *self)
{
    Py_XDECREF(self->bounds_list);
    Py_XDECREF(self->exemplars);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Counts_observe(Counts *self, PyObject *arg)
{
    double v;
    if (as_double(arg, &v) < 0)
        return NULL;
    counts_add(self, v, 1);
    Py_RETURN_NONE;
}

static PyObject *Counts_observe_n(Counts *self, PyObject *const *args, Py_ssize_t nargs)
{
    double v;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "observe_n(value, n) takes 2 arguments, not %zd", nargs);
        return NULL;
    }
    unsigned long long k;
    if (as_double(args[0], &v) < 0 || as_count(args[1], "observe_n: n", &k) < 0)
        return NULL;
    counts_add(self, v, k);
    Py_RETURN_NONE;
}

static PyObject *Counts_observe_since(Counts *self, PyObject *arg)
{
    double start, now;
    if (as_double(arg, &start) < 0 || perf_now(&now) < 0)
        return NULL;
    counts_add(self, now - start, 1);
    Py_RETURN_NONE;
}

static PyObject *Counts_observe_elapsed(Counts *self, PyObject *const *args, Py_ssize_t nargs)
{
    double now;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "observe_elapsed(now, starts) takes 2 arguments, not %zd", nargs);
        return NULL;
    }
    if (as_double(args[0], &now) < 0)
        return NULL;
    PyObject *starts = PySequence_Fast(args[1], "observe_elapsed: starts must be a sequence");
    if (starts == NULL)
        return NULL;
    int failed = counts_add_elapsed(self, now, PySequence_Fast_ITEMS(starts),
                                    PySequence_Fast_GET_SIZE(starts));
    Py_DECREF(starts);
    if (failed)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Counts_observe_traced(Counts *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"value", "trace_id", "at", NULL};
    PyObject *value, *trace_id, *at = Py_None;
    double v;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|O:observe_traced", kwlist, &value,
                                     &trace_id, &at))
        return NULL;
    if (not_ready(self) || as_double(value, &v) < 0)
        return NULL;
    Py_ssize_t i = bucket(self, v);
    PyObject *when = at == Py_None ? PyObject_CallNoArgs(time_time) : Py_NewRef(at);
    if (when == NULL)
        return NULL;
    PyObject *key = PyLong_FromSsize_t(i);
    PyObject *val = PyFloat_FromDouble(v);
    PyObject *kept = (key && val) ? PyTuple_Pack(3, trace_id, val, when) : NULL;
    int failed = kept == NULL || PyDict_SetItem(self->exemplars, key, kept) < 0;
    Py_XDECREF(key);
    Py_XDECREF(val);
    Py_XDECREF(kept);
    Py_DECREF(when);
    if (failed)
        return NULL;
    self->counts[i]++;
    self->sum += v;
    Py_RETURN_NONE;
}

static PyObject *Counts_index(Counts *self, PyObject *arg)
{
    double v;
    if (as_double(arg, &v) < 0)
        return NULL;
    return PyLong_FromSsize_t(bucket(self, v));
}

static PyObject *Counts_get_counts(Counts *self, void *closure)
{
    PyObject *list = PyList_New(self->n + 1);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i <= self->n; i++) {
        PyObject *c = PyLong_FromUnsignedLongLong(self->counts[i]);
        if (c == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, c);
    }
    return list;
}

static int Counts_set_counts(Counts *self, PyObject *value, void *closure)
{
    unsigned long long counts[MAX_BOUNDS + 1];
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "counts cannot be deleted");
        return -1;
    }
    PyObject *seq = PySequence_Fast(value, "counts must be a sequence of integers");
    if (seq == NULL)
        return -1;
    if (PySequence_Fast_GET_SIZE(seq) != self->n + 1) {
        PyErr_Format(PyExc_ValueError, "%zd counts for %zd buckets",
                     PySequence_Fast_GET_SIZE(seq), self->n + 1);
        Py_DECREF(seq);
        return -1;
    }
    for (Py_ssize_t i = 0; i <= self->n; i++) {
        counts[i] = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (counts[i] == (unsigned long long)-1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    memcpy(self->counts, counts, sizeof(counts[0]) * (size_t)(self->n + 1));
    return 0;
}

static PyObject *Counts_get_count(Counts *self, void *closure)
{
    unsigned long long total = 0;
    for (Py_ssize_t i = 0; i <= self->n; i++)
        total += self->counts[i];
    return PyLong_FromUnsignedLongLong(total);
}

static PyObject *Counts_get_sum(Counts *self, void *closure)
{
    return PyFloat_FromDouble(self->sum);
}

static int Counts_set_sum(Counts *self, PyObject *value, void *closure)
{
    double v;
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "sum cannot be deleted");
        return -1;
    }
    if (as_double(value, &v) < 0)
        return -1;
    self->sum = v;
    return 0;
}

static PyObject *Counts_get_bounds(Counts *self, void *closure)
{
    if (not_ready(self))
        return NULL;
    return PySequence_List(self->bounds_list);  /* a copy: the bounds are fixed */
}

static PyObject *Counts_get_exemplars(Counts *self, void *closure)
{
    if (not_ready(self))
        return NULL;
    return Py_NewRef(self->exemplars);
}

static PyMethodDef Counts_methods[] = {
    {"observe", (PyCFunction)Counts_observe, METH_O, "One observation of ``value``."},
    {"observe_n", (PyCFunction)(void (*)(void))Counts_observe_n, METH_FASTCALL,
     "``n`` observations of the same ``value``."},
    {"observe_since", (PyCFunction)Counts_observe_since, METH_O,
     "One observation of ``time.perf_counter() - start``, the clock read here."},
    {"observe_elapsed", (PyCFunction)(void (*)(void))Counts_observe_elapsed, METH_FASTCALL,
     "One observation of ``now - start`` per start."},
    {"observe_traced", (PyCFunction)(void (*)(void))Counts_observe_traced,
     METH_VARARGS | METH_KEYWORDS,
     "Observe ``value`` and keep ``trace_id`` as its bucket's exemplar, at ``at``."},
    {"index", (PyCFunction)Counts_index, METH_O, "The bucket of ``value``."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Counts_getset[] = {
    {"counts", (getter)Counts_get_counts, (setter)Counts_set_counts,
     "Per-bucket (not cumulative) counts, a new list; assign a list to replace them.", NULL},
    {"count", (getter)Counts_get_count, NULL, "Observations in all.", NULL},
    {"sum", (getter)Counts_get_sum, (setter)Counts_set_sum, "Sum of the observations.", NULL},
    {"bounds", (getter)Counts_get_bounds, NULL, "The bounds as given (a new list).", NULL},
    {"exemplars", (getter)Counts_get_exemplars, NULL,
     "bucket -> (trace id, value, at) of its last traced observation.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject CountsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "wsops.instrumentation._counting.Counts",
    .tp_doc = "A histogram's bucket counts and sum (the compiled twin of pycounts.Counts).",
    .tp_basicsize = sizeof(Counts),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Counts_init,
    .tp_dealloc = (destructor)Counts_dealloc,
    .tp_methods = Counts_methods,
    .tp_getset = Counts_getset,
};

int add_counts(PyObject *module)
{
    PyObject *time_module = PyImport_ImportModule("time");
    if (time_module == NULL)
        return -1;
    time_time = PyObject_GetAttrString(time_module, "time");
    Py_DECREF(time_module);
    if (time_time == NULL || PyModule_AddType(module, &CountsType) < 0)
        return -1;
    return PyModule_AddIntConstant(module, "MAX_BOUNDS", MAX_BOUNDS);
}
