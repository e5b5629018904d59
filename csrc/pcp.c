/* PcpCore: the page machine's order-0 pcp fast paths (kmem/page/machine.py, kmem/page/pcp.py).
 *
 * alloc_pages(order=0, gfp=GFP_KERNEL, cpu=0) and free_pages(pfn, order, cpu=0) of a
 * PageMachine, for the one common case each: an order-0 allocation whose gfp already has a
 * plan, whose first zone passes the high watermark on the order-0 shortcut and whose CPU's pcp
 * list is not empty (rmqueue_pcplist without a refill); an order-0 free of an allocated frame
 * of a pcp migratetype that stays below pcp->high (free_frozen_page_commit without a drain).
 * Anything else goes, before any change, to the pure-Python method: refills, drains, high
 * tuning on a reclaiming or below-high zone, every error. The fast paths change exactly the
 * fields the pure path changes, in the machine's and pcp's own objects and the mem_map's own
 * columns; nothing here keeps state of its own.
 *
 * The page machine is not thread-safe (its pure path takes no lock), so neither is this.
 */
#include "kmem_core.h"
#include <structmember.h>

#define PCP_STATE 0xC0
#define PAGEBLOCK_ORDER 9
#define MIGRATE_PCPTYPES 3
#define PCPF_PREV_FREE_HIGH_ORDER 1
#define PCP_BATCH_SCALE_MAX 5

typedef struct {
    PyObject_HEAD
    PyObject *machine;
    PyObject *plans;    /* machine._plans: gfp -> _Plan(mt, highest, zonelist, fast_flags) */
    PyObject *zonelist; /* machine._zonelist, for the zone of a freed pfn */
    PyObject *pure_alloc, *pure_free;
    PyObject *gfp_kernel;
    Py_buffer state_view, alloc_mt_view, pageblock_view, next_view, prev_view;
    unsigned char *state, *alloc_mt, *pageblock_mt;
    int32_t *next, *prev;
    Py_ssize_t nr_pages, links_len, nr_pageblocks;
    long nr_cpus, alloc_highatomic, alloc_reserves, alloc_kswapd, wmark_high;
    /* PerCpuPages has __slots__: its fields are read and written at their offsets. */
    PyTypeObject *pcp_type;
    Py_ssize_t off_heads, off_count, off_high, off_high_min, off_high_max, off_batch, off_flags,
        off_free_count, off_alloc_factor;
    /* machine._zonelist's zones' [start_pfn, end_pfn) (Final attributes). */
    Py_ssize_t nr_zones;
    long long zone_start[8], zone_end[8];
} PcpCore;

/* Interned attribute names. */
static PyObject *s_below_high, *s_watermark, *s_watermark_boost, *s_free_pages,
    *s_nr_free_highatomic, *s_lowmem_reserve, *s_pcps, *s_heads, *s_boosted_watermark,
    *s_free_count, *s_count, *s_numa_hit, *s_allocations, *s_frees, *s_start_pfn, *s_end_pfn,
    *s_high, *s_high_min, *s_high_max, *s_batch, *s_flags, *s_alloc_factor, *s_reclaim_active;

static int
intern_names(void)
{
#define NAME(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return -1
    NAME(s_below_high, "below_high");
    NAME(s_watermark, "watermark");
    NAME(s_watermark_boost, "watermark_boost");
    NAME(s_free_pages, "free_pages");
    NAME(s_nr_free_highatomic, "nr_free_highatomic");
    NAME(s_lowmem_reserve, "lowmem_reserve");
    NAME(s_pcps, "pcps");
    NAME(s_heads, "_heads");
    NAME(s_boosted_watermark, "boosted_watermark");
    NAME(s_free_count, "free_count");
    NAME(s_count, "count");
    NAME(s_numa_hit, "numa_hit");
    NAME(s_allocations, "allocations");
    NAME(s_frees, "frees");
    NAME(s_start_pfn, "start_pfn");
    NAME(s_end_pfn, "end_pfn");
    NAME(s_high, "high");
    NAME(s_high_min, "high_min");
    NAME(s_high_max, "high_max");
    NAME(s_batch, "batch");
    NAME(s_flags, "flags");
    NAME(s_alloc_factor, "alloc_factor");
    NAME(s_reclaim_active, "reclaim_active");
#undef NAME
    return 0;
}

/* An attribute that must be an int (fits a long long): 0, or -1 with an exception set. A
 * value that is not an exact int, or too large, is reported as 1: take the slow path. */
static int
get_ll(PyObject *obj, PyObject *name, long long *out)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL)
        return -1;
    if (!PyLong_CheckExact(value)) {
        Py_DECREF(value);
        return 1;
    }
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(value, &overflow);
    Py_DECREF(value);
    if (overflow)
        return 1;
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* The truth of an attribute: 0/1, or -1 with an exception set. */
static int
get_bool(PyObject *obj, PyObject *name)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL)
        return -1;
    int truth = PyObject_IsTrue(value);
    Py_DECREF(value);
    return truth;
}

static int
set_ll(PyObject *obj, PyObject *name, long long value)
{
    PyObject *number = PyLong_FromLongLong(value);
    if (number == NULL)
        return -1;
    int rc = PyObject_SetAttr(obj, name, number);
    Py_DECREF(number);
    return rc;
}

/* The instance dict of a zone or the machine (plain attributes, no descriptors), borrowed;
 * NULL with an exception set. */
static PyObject *
instance_dict(PyObject *obj)
{
    PyObject **where = _PyObject_GetDictPtr(obj);
    if (where == NULL || *where == NULL || !PyDict_CheckExact(*where)) {
        PyErr_SetString(PyExc_TypeError, "PcpCore: an object without an instance dict");
        return NULL;
    }
    return *where;
}

/* dict[name] as a long long: 0, 1 (not an exact int or absent: slow path), -1 (error). */
static int
dget_ll(PyObject *dict, PyObject *name, long long *out)
{
    PyObject *value = PyDict_GetItemWithError(dict, name);
    if (value == NULL)
        return PyErr_Occurred() ? -1 : 1;
    if (!PyLong_CheckExact(value))
        return 1;
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(value, &overflow);
    return overflow ? 1 : 0;
}

/* The truth of dict[name] (a bool): 0/1, 1 for anything else (slow), -1 (error). */
static int
dget_flag(PyObject *dict, PyObject *name)
{
    PyObject *value = PyDict_GetItemWithError(dict, name);
    if (value == NULL)
        return PyErr_Occurred() ? -1 : 1;
    return value == Py_False ? 0 : 1;
}

static int
dset_ll(PyObject *dict, PyObject *name, long long value)
{
    PyObject *number = PyLong_FromLongLong(value);
    if (number == NULL)
        return -1;
    int rc = PyDict_SetItem(dict, name, number);
    Py_DECREF(number);
    return rc;
}

/* A PerCpuPages slot as a long long: 0, 1 (unset or not an exact int: slow). */
static inline int
sget_ll(PyObject *pcp, Py_ssize_t offset, long long *out)
{
    PyObject *value = *(PyObject **)((char *)pcp + offset);
    if (value == NULL || !PyLong_CheckExact(value))
        return 1;
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(value, &overflow);
    return overflow ? 1 : 0;
}

static inline int
sset_ll(PyObject *pcp, Py_ssize_t offset, long long value)
{
    PyObject *number = PyLong_FromLongLong(value);
    if (number == NULL)
        return -1;
    PyObject **where = (PyObject **)((char *)pcp + offset);
    PyObject *old = *where;
    *where = number;
    Py_XDECREF(old);
    return 0;
}

/* An exact int argument in [lo, hi): 0 and its value, or 1 (slow path). */
static int
small_arg(PyObject *arg, long lo, long hi, long *out)
{
    if (!PyLong_CheckExact(arg))
        return 1;
    int overflow;
    long value = PyLong_AsLongAndOverflow(arg, &overflow);
    if (overflow || value < lo || value >= hi)
        return 1;
    *out = value;
    return 0;
}

static inline Py_ssize_t
link_index(const PcpCore *core, long long link)
{
    return link < 0 ? (Py_ssize_t)(core->links_len + link) : (Py_ssize_t)link;
}

/* pcp->lists head index of (pcp, order-0 list of mt), or 1 (slow path) / -1 (error). */
static int
list_head(const PcpCore *core, PyObject *pcp, long mt, long long *head)
{
    PyObject *heads = *(PyObject **)((char *)pcp + core->off_heads);
    if (heads == NULL)
        return 1;
    Py_INCREF(heads);
    int rc = 1;
    if (PyList_CheckExact(heads) && mt < PyList_GET_SIZE(heads)) {
        PyObject *item = PyList_GET_ITEM(heads, mt);
        int overflow;
        if (PyLong_CheckExact(item)) {
            *head = PyLong_AsLongLongAndOverflow(item, &overflow);
            rc = overflow ? 1 : 0;
        }
    }
    Py_DECREF(heads);
    return rc;
}

/* zone.pcps[cpu] (a new reference), NULL with an exception, or NULL without one (slow). */
static PyObject *
zone_pcp(const PcpCore *core, PyObject *zone_dict, long cpu)
{
    PyObject *pcps = PyDict_GetItemWithError(zone_dict, s_pcps);
    if (pcps == NULL)
        return NULL;
    PyObject *pcp = NULL;
    if (PyList_CheckExact(pcps) && cpu < PyList_GET_SIZE(pcps)) {
        pcp = PyList_GET_ITEM(pcps, cpu);
        if (Py_TYPE(pcp) != core->pcp_type)
            return NULL;
        Py_INCREF(pcp);
    }
    return pcp;
}

#define TRY(expr) do { int rc_ = (expr); if (rc_ < 0) goto error; if (rc_ > 0) goto slow; } while (0)

static PyObject *
pcp_alloc_pages(PcpCore *core, PyObject *const *args, Py_ssize_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *zone = NULL, *pcp = NULL, *watermark = NULL, *reserve = NULL;
    long order = 0, cpu = 0, mt, highest;
    long long fast_flags, free, unusable, mark, boost, lowmem, head, pfn;
    if (kwnames != NULL || nargs > 3)
        goto slow;
    if (nargs >= 1 && small_arg(args[0], 0, 1, &order))
        goto slow;
    if (nargs >= 3 && small_arg(args[2], 0, core->nr_cpus, &cpu))
        goto slow;
    PyObject *gfp = nargs >= 2 ? args[1] : core->gfp_kernel;
    if (!PyLong_CheckExact(gfp))
        goto slow;
    PyObject *plan = PyDict_GetItemWithError(core->plans, gfp); /* borrowed */
    if (plan == NULL) {
        if (PyErr_Occurred())
            return NULL;
        goto slow;
    }
    if (!PyTuple_CheckExact(plan) && !PyTuple_Check(plan))
        goto slow;
    if (PyTuple_GET_SIZE(plan) != 4)
        goto slow;
    PyObject *zonelist = PyTuple_GET_ITEM(plan, 2);
    if (small_arg(PyTuple_GET_ITEM(plan, 0), 0, MIGRATE_PCPTYPES, &mt) ||
        small_arg(PyTuple_GET_ITEM(plan, 1), 0, 64, &highest) ||
        !PyTuple_CheckExact(zonelist) || PyTuple_GET_SIZE(zonelist) < 1 ||
        !PyLong_CheckExact(PyTuple_GET_ITEM(plan, 3)))
        goto slow;
    fast_flags = PyLong_AsLongLong(PyTuple_GET_ITEM(plan, 3));
    if (fast_flags == -1 && PyErr_Occurred())
        return NULL;
    if (fast_flags & core->alloc_highatomic)
        goto slow;
    zone = PyTuple_GET_ITEM(zonelist, 0);
    Py_INCREF(zone);
    PyObject *zd = instance_dict(zone), *md = instance_dict(core->machine);
    if (zd == NULL || md == NULL)
        goto error;
    /* get_page_from_freelist's first zone: not below high, and over the high mark on
     * zone_watermark_fast's order-0 shortcut. */
    TRY(dget_flag(zd, s_below_high));  /* true: the slow path */
    TRY(dget_ll(zd, s_free_pages, &free));
    if (fast_flags & core->alloc_reserves)
        unusable = 0;
    else
        TRY(dget_ll(zd, s_nr_free_highatomic, &unusable));
    TRY(dget_ll(zd, s_watermark_boost, &boost));
    if ((watermark = PyDict_GetItemWithError(zd, s_watermark)) == NULL ||
        (reserve = PyDict_GetItemWithError(zd, s_lowmem_reserve)) == NULL) {
        watermark = reserve = NULL;
        if (PyErr_Occurred())
            goto error;
        goto slow;
    }
    Py_INCREF(watermark);
    Py_INCREF(reserve);
    if (!PyList_CheckExact(watermark) || PyList_GET_SIZE(watermark) <= core->wmark_high ||
        !PyTuple_CheckExact(reserve) || PyTuple_GET_SIZE(reserve) <= highest ||
        !PyLong_CheckExact(PyList_GET_ITEM(watermark, core->wmark_high)) ||
        !PyLong_CheckExact(PyTuple_GET_ITEM(reserve, highest)))
        goto slow;
    mark = PyLong_AsLongLong(PyList_GET_ITEM(watermark, core->wmark_high));
    lowmem = PyLong_AsLongLong(PyTuple_GET_ITEM(reserve, highest));
    if (PyErr_Occurred())
        goto error;
    if (!(free - (free < unusable ? free : unusable) > mark + boost + lowmem))
        goto slow;
    if (fast_flags & core->alloc_kswapd)
        TRY(dget_flag(zd, s_boosted_watermark)); /* boosted: wakeup_kswapd, the slow path */
    /* rmqueue_pcplist: a non-empty list. */
    if ((pcp = zone_pcp(core, zd, cpu)) == NULL) {
        if (PyErr_Occurred())
            goto error;
        goto slow;
    }
    TRY(list_head(core, pcp, mt, &head));
    Py_ssize_t head_at = link_index(core, head);
    if (head_at < 0 || head_at >= core->links_len)
        goto slow;
    pfn = core->next[head_at];
    if (pfn < 0 || pfn >= core->nr_pages)
        goto slow;
    long long free_count, count, numa_hit, allocations;
    TRY(sget_ll(pcp, core->off_free_count, &free_count));
    TRY(sget_ll(pcp, core->off_count, &count));
    TRY(dget_ll(zd, s_numa_hit, &numa_hit));
    TRY(dget_ll(md, s_allocations, &allocations));
    Py_ssize_t before = link_index(core, core->prev[pfn]), after = link_index(core, core->next[pfn]);
    if (before < 0 || before >= core->links_len || after < 0 || after >= core->links_len)
        goto slow;
    /* Every check passed: the state changes, in the pure path's order. */
    if (sset_ll(pcp, core->off_free_count, free_count >> 1) < 0)
        goto error;
    core->next[before] = core->next[pfn];
    core->prev[after] = core->prev[pfn];
    if (sset_ll(pcp, core->off_count, count - 1) < 0 || dset_ll(zd, s_numa_hit, numa_hit + 1) < 0)
        goto error;
    core->state[pfn] = KMEM_ALLOCATED;
    core->alloc_mt[pfn] = (unsigned char)mt;
    if (dset_ll(md, s_allocations, allocations + 1) < 0)
        goto error;
    Py_DECREF(zone);
    Py_DECREF(pcp);
    Py_DECREF(watermark);
    Py_DECREF(reserve);
    return PyLong_FromLongLong(pfn);
slow:
    Py_XDECREF(zone);
    Py_XDECREF(pcp);
    Py_XDECREF(watermark);
    Py_XDECREF(reserve);
    return PyObject_Vectorcall(core->pure_alloc, args, nargsf, kwnames);
error:
    Py_XDECREF(zone);
    Py_XDECREF(pcp);
    Py_XDECREF(watermark);
    Py_XDECREF(reserve);
    return NULL;
}

static PyObject *
pcp_free_pages(PcpCore *core, PyObject *const *args, Py_ssize_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *zone = NULL, *pcp = NULL;
    long pfn, order, cpu = 0;
    if (kwnames != NULL || nargs < 2 || nargs > 3 ||
        small_arg(args[0], 0, (long)core->nr_pages, &pfn) || small_arg(args[1], 0, 1, &order) ||
        (nargs == 3 && small_arg(args[2], 0, core->nr_cpus, &cpu)))
        goto slow;
    /* The zone of pfn (machine._zone_of). */
    for (Py_ssize_t i = 0; i < core->nr_zones; i++) {
        if (core->zone_start[i] <= pfn && pfn < core->zone_end[i]) {
            zone = PyTuple_GET_ITEM(core->zonelist, i);
            Py_INCREF(zone);
            break;
        }
    }
    if (zone == NULL || core->state[pfn] != KMEM_ALLOCATED)
        goto slow;  /* no zone, or not an allocated order-0 frame: the pure path's errors */
    Py_ssize_t block = pfn >> PAGEBLOCK_ORDER;
    if (block >= core->nr_pageblocks || core->pageblock_mt[block] >= MIGRATE_PCPTYPES)
        goto slow;  /* isolated or highatomic pageblocks */
    long mt = core->pageblock_mt[block];
    PyObject *zd = instance_dict(zone), *md = instance_dict(core->machine);
    if (zd == NULL || md == NULL)
        goto error;
    if ((pcp = zone_pcp(core, zd, cpu)) == NULL) {
        if (PyErr_Occurred())
            goto error;
        goto slow;
    }
    long long head, count, high, high_min, high_max, batch, flags, free_count, alloc_factor,
        frees;
    TRY(list_head(core, pcp, mt, &head));
    TRY(sget_ll(pcp, core->off_count, &count));
    TRY(sget_ll(pcp, core->off_high, &high));
    TRY(sget_ll(pcp, core->off_high_min, &high_min));
    TRY(sget_ll(pcp, core->off_high_max, &high_max));
    TRY(sget_ll(pcp, core->off_batch, &batch));
    TRY(sget_ll(pcp, core->off_flags, &flags));
    TRY(sget_ll(pcp, core->off_free_count, &free_count));
    TRY(sget_ll(pcp, core->off_alloc_factor, &alloc_factor));
    TRY(dget_ll(md, s_frees, &frees));
    if (batch < 0 || batch >= (1LL << 40))
        goto slow;
    /* nr_pcp_high(batch, free_high=False) without its tuning branches: the clamped high, on a
     * zone that is not reclaiming and (unless high is fixed) not below high; the free must
     * leave count below it (else free_pcppages_bulk drains). */
    long long clamped = high < high_min ? high_min : high;
    if (clamped > high_max)
        clamped = high_max;
    if (clamped <= 0 || count + 1 >= clamped)
        goto slow;
    TRY(dget_flag(zd, s_reclaim_active));
    if (high_min != high_max)
        TRY(dget_flag(zd, s_below_high));
    Py_ssize_t head_at = link_index(core, head);
    if (head_at < 0 || head_at >= core->links_len)
        goto slow;
    Py_ssize_t first = link_index(core, core->next[head_at]);
    if (first < 0 || first >= core->links_len)
        goto slow;
    /* Every check passed: the state changes of free_pages + free_frozen_page_commit. */
    if (dset_ll(md, s_frees, frees + 1) < 0 ||
        sset_ll(pcp, core->off_alloc_factor, alloc_factor >> 1) < 0)
        goto error;
    core->next[pfn] = core->next[head_at];
    core->prev[pfn] = (int32_t)head;
    core->prev[first] = (int32_t)pfn;
    core->next[head_at] = (int32_t)pfn;
    core->state[pfn] = PCP_STATE;
    if (sset_ll(pcp, core->off_count, count + 1) < 0)
        goto error;
    if ((flags & PCPF_PREV_FREE_HIGH_ORDER) &&
        sset_ll(pcp, core->off_flags, flags & ~(long long)PCPF_PREV_FREE_HIGH_ORDER) < 0)
        goto error;
    if (free_count < batch << PCP_BATCH_SCALE_MAX && sset_ll(pcp, core->off_free_count, free_count + 1) < 0)
        goto error;
    if (sset_ll(pcp, core->off_high, clamped) < 0)
        goto error;
    Py_DECREF(zone);
    Py_DECREF(pcp);
    Py_RETURN_NONE;
slow:
    Py_XDECREF(zone);
    Py_XDECREF(pcp);
    return PyObject_Vectorcall(core->pure_free, args, nargsf, kwnames);
error:
    Py_XDECREF(zone);
    Py_XDECREF(pcp);
    return NULL;
}

static int
pcp_core_init(PcpCore *core, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"machine", "state", "alloc_mt", "pageblock_mt", "next", "prev",
                               "nr_pages", "nr_cpus", "gfp_kernel", "alloc_highatomic",
                               "alloc_reserves", "alloc_kswapd", "wmark_high", "pure_alloc_pages",
                               "pure_free_pages", "pcp_type", NULL};
    PyObject *machine, *state, *alloc_mt, *pageblock_mt, *next, *prev, *gfp_kernel, *pa, *pf;
    PyTypeObject *pcp_type;
    Py_ssize_t nr_pages;
    long nr_cpus, highatomic, reserves, kswapd, wmark_high;
    if (core->machine != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a PcpCore is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "$OOOOOOnlOllllOOO!", keywords, &machine,
                                     &state, &alloc_mt, &pageblock_mt, &next, &prev, &nr_pages,
                                     &nr_cpus, &gfp_kernel, &highatomic, &reserves, &kswapd,
                                     &wmark_high, &pa, &pf, &PyType_Type, &pcp_type))
        return -1;
    struct { const char *name; Py_ssize_t *offset; } slots[] = {
        {"_heads", &core->off_heads}, {"count", &core->off_count}, {"high", &core->off_high},
        {"high_min", &core->off_high_min}, {"high_max", &core->off_high_max},
        {"batch", &core->off_batch}, {"flags", &core->off_flags},
        {"free_count", &core->off_free_count}, {"alloc_factor", &core->off_alloc_factor},
    };
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++) {
        PyObject *descr = PyObject_GetAttrString((PyObject *)pcp_type, slots[i].name);
        if (descr == NULL)
            return -1;
        int ok = Py_IS_TYPE(descr, &PyMemberDescr_Type) &&
                 ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX;
        if (ok)
            *slots[i].offset = ((PyMemberDescrObject *)descr)->d_member->offset;
        Py_DECREF(descr);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "PcpCore: %s is not a __slots__ field", slots[i].name);
            return -1;
        }
    }
    PyObject *plans = PyObject_GetAttrString(machine, "_plans");
    if (plans == NULL)
        return -1;
    PyObject *zonelist = PyObject_GetAttrString(machine, "_zonelist");
    if (zonelist == NULL) {
        Py_DECREF(plans);
        return -1;
    }
    if (!PyDict_CheckExact(plans) || !PyTuple_CheckExact(zonelist)) {
        PyErr_SetString(PyExc_TypeError, "PcpCore needs machine._plans (dict), _zonelist (tuple)");
        Py_DECREF(plans);
        Py_DECREF(zonelist);
        return -1;
    }
    core->plans = plans;
    core->zonelist = zonelist;
    core->nr_zones = PyTuple_GET_SIZE(zonelist);
    if (core->nr_zones > 8) {
        PyErr_SetString(PyExc_ValueError, "PcpCore: more than 8 zones");
        return -1;
    }
    for (Py_ssize_t i = 0; i < core->nr_zones; i++) {
        PyObject *zone = PyTuple_GET_ITEM(zonelist, i);
        if (get_ll(zone, s_start_pfn, &core->zone_start[i]) != 0 ||
            get_ll(zone, s_end_pfn, &core->zone_end[i]) != 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "PcpCore: zone bounds must be ints");
            return -1;
        }
    }
    if (kmem_get_buffer(state, &core->state_view, 1, "state") < 0)
        return -1;
    core->state = core->state_view.buf;
    if (kmem_get_buffer(alloc_mt, &core->alloc_mt_view, 1, "alloc_mt") < 0)
        return -1;
    core->alloc_mt = core->alloc_mt_view.buf;
    if (kmem_get_buffer(pageblock_mt, &core->pageblock_view, 1, "pageblock_mt") < 0)
        return -1;
    core->pageblock_mt = core->pageblock_view.buf;
    if (kmem_get_buffer(next, &core->next_view, 4, "next") < 0)
        return -1;
    core->next = core->next_view.buf;
    if (kmem_get_buffer(prev, &core->prev_view, 4, "prev") < 0)
        return -1;
    core->prev = core->prev_view.buf;
    if (nr_pages < 0 || nr_pages > core->state_view.len || nr_pages > core->alloc_mt_view.len ||
        core->next_view.len != core->prev_view.len || nr_pages > core->next_view.len / 4 ||
        nr_cpus < 1) {
        PyErr_SetString(PyExc_ValueError, "PcpCore: buffers smaller than nr_pages");
        return -1;
    }
    core->nr_pages = nr_pages;
    core->links_len = core->next_view.len / 4;
    core->nr_pageblocks = core->pageblock_view.len;
    core->nr_cpus = nr_cpus;
    core->alloc_highatomic = highatomic;
    core->alloc_reserves = reserves;
    core->alloc_kswapd = kswapd;
    core->wmark_high = wmark_high;
    /* The machine owns its core (machine.alloc_pages is bound to it): keep only a weak
     * link back would be cleaner, but a strong one with GC support is simpler and safe. */
    core->machine = Py_NewRef(machine);
    core->pcp_type = (PyTypeObject *)Py_NewRef(pcp_type);
    core->gfp_kernel = Py_NewRef(gfp_kernel);
    core->pure_alloc = Py_NewRef(pa);
    core->pure_free = Py_NewRef(pf);
    return 0;
}

static int
pcp_core_traverse(PcpCore *core, visitproc visit, void *arg)
{
    Py_VISIT(core->machine);
    Py_VISIT(core->plans);
    Py_VISIT(core->zonelist);
    Py_VISIT(core->pure_alloc);
    Py_VISIT(core->pure_free);
    Py_VISIT(core->gfp_kernel);
    Py_VISIT(core->pcp_type);
    return 0;
}

static int
pcp_core_clear(PcpCore *core)
{
    Py_CLEAR(core->machine);
    Py_CLEAR(core->plans);
    Py_CLEAR(core->zonelist);
    Py_CLEAR(core->pure_alloc);
    Py_CLEAR(core->pure_free);
    Py_CLEAR(core->gfp_kernel);
    Py_CLEAR(core->pcp_type);
    return 0;
}

static void
release_views(PcpCore *core)
{
    Py_buffer *views[] = {&core->state_view, &core->alloc_mt_view, &core->pageblock_view,
                          &core->next_view, &core->prev_view};
    for (size_t i = 0; i < sizeof views / sizeof views[0]; i++)
        if (views[i]->obj != NULL)
            PyBuffer_Release(views[i]);
}

static void
pcp_core_dealloc(PcpCore *core)
{
    PyObject_GC_UnTrack(core);
    pcp_core_clear(core);
    release_views(core);
    Py_TYPE(core)->tp_free((PyObject *)core);
}

static PyMethodDef pcp_core_methods[] = {
    {"alloc_pages", (PyCFunction)(void (*)(void))pcp_alloc_pages, METH_FASTCALL | METH_KEYWORDS,
     "alloc_pages(order=0, gfp=GFP_KERNEL, cpu=0): PageMachine.alloc_pages, order-0 pcp hits"
     " here, everything else in the pure method"},
    {"free_pages", (PyCFunction)(void (*)(void))pcp_free_pages, METH_FASTCALL | METH_KEYWORDS,
     "free_pages(pfn, order, cpu=0): PageMachine.free_pages, order-0 frees that need no drain"
     " here, everything else in the pure method"},
    {NULL, NULL, 0, NULL},
};

PyTypeObject kmem_PcpCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kmem._core.PcpCore",
    .tp_basicsize = sizeof(PcpCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The page machine's order-0 pcp fast paths over its own objects and buffers.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)pcp_core_init,
    .tp_dealloc = (destructor)pcp_core_dealloc,
    .tp_traverse = (traverseproc)pcp_core_traverse,
    .tp_clear = (inquiry)pcp_core_clear,
    .tp_methods = pcp_core_methods,
};

int
kmem_pcp_init(void)
{
    return intern_names();
}
