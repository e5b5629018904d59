/* PcpCore: the page machine's order-0 pcp fast paths (kmem/page/machine.py, kmem/page/pcp.py).
 *
 * alloc_pages(order=0, gfp=GFP_KERNEL, cpu=0) and free_pages(pfn, order, cpu=0) of a
 * PageMachine, for the one common case each: an order-0 allocation whose gfp already has a
 * plan, whose first zone passes the high watermark on the order-0 shortcut and whose CPU's pcp
 * list is not empty (rmqueue_pcplist without a refill); an order-0 free of an allocated frame
 * of a pcp migratetype that stays below pcp->high (free_frozen_page_commit without a drain).
 * Anything else goes, before any change, to the pure-Python method: refills, drains, high
 * tuning on a reclaiming or below-high zone, every error.
 *
 * The fast paths change exactly the values the pure path changes, in the buffers the Python
 * objects own (kmem/page/counters.py): the machine's block (allocations, frees), each zone's
 * block (free pages, watermarks, flags, numa_hit), each pcp's block (count, high, batch, ...),
 * and the mem_map's columns. Nothing here keeps state of its own but a cache of the last gfp
 * value's plan (machine._plans never changes an entry once made).
 *
 * The page machine is not thread-safe (its pure path takes no lock), so neither is this.
 */
#include "kmem_core.h"

#define PCP_STATE 0xC0
#define PAGEBLOCK_ORDER 9
#define MIGRATE_PCPTYPES 3
#define MAX_NR_ZONES 5
#define NR_PCP_LISTS 14
#define PCPF_PREV_FREE_HIGH_ORDER 1
#define PCP_BATCH_SCALE_MAX 5

/* The blocks of values (kmem/page/zone.py, pcp.py, machine.py: checked at init). */
enum {
    Z_FREE_PAGES, Z_NR_FREE_HIGHATOMIC, Z_WATERMARK_BOOST, Z_BELOW_HIGH, Z_BOOSTED_WATERMARK,
    Z_RECLAIM_ACTIVE, Z_NUMA_HIT, Z_WATERMARK, Z_LOWMEM_RESERVE = Z_WATERMARK + 4,
    Z_NR_VALUES = Z_LOWMEM_RESERVE + MAX_NR_ZONES
};
enum {
    P_COUNT, P_HIGH, P_HIGH_MIN, P_HIGH_MAX, P_BATCH, P_FLAGS, P_ALLOC_FACTOR, P_FREE_COUNT,
    P_NR_VALUES
};
enum { M_ALLOCATIONS, M_FREES, M_FAILURES, M_NR_VALUES };

typedef struct {
    PyObject_HEAD
    PyObject *machine;
    PyObject *plans;    /* machine._plans: gfp -> _Plan(mt, highest, zonelist, fast_flags) */
    PyObject *zones;    /* machine.zones: zone objects by index */
    PyObject *pure_alloc, *pure_free;
    PyObject *gfp_kernel;
    Py_buffer state_view, alloc_mt_view, pageblock_view, next_view, prev_view, pfmemalloc_view;
    Py_buffer machine_view, zone_view, pcp_view;
    unsigned char *state, *alloc_mt, *pageblock_mt, *pfmemalloc;
    int32_t *next, *prev;
    int64_t *machine_values, *zone_values, *pcp_values;
    Py_ssize_t nr_pages, links_len, nr_pageblocks, pcp_list_base;
    long nr_cpus, alloc_highatomic, alloc_reserves, alloc_kswapd, wmark_high;
    /* machine._zonelist's zones: [start_pfn, end_pfn) and zone index (Final attributes). */
    Py_ssize_t nr_zones;
    long long zone_start[MAX_NR_ZONES], zone_end[MAX_NR_ZONES];
    long zone_index[MAX_NR_ZONES];
    /* The plan of the last gfp value seen (plan_valid): what the fast path needs of it. */
    int plan_valid, plan_fast;
    long long plan_gfp, plan_flags;
    long plan_mt, plan_highest, plan_zone;
} PcpCore;

/* An attribute that must be an int (fits a long long): 0, or -1 with an exception set. */
static int
get_ll(PyObject *obj, const char *name, long long *out)
{
    PyObject *value = PyObject_GetAttrString(obj, name);
    if (value == NULL)
        return -1;
    if (!PyLong_CheckExact(value)) {
        Py_DECREF(value);
        PyErr_Format(PyExc_TypeError, "PcpCore: %s must be an int", name);
        return -1;
    }
    *out = PyLong_AsLongLong(value);
    Py_DECREF(value);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* An exact int argument in [lo, hi): 0 and its value, or 1 (slow path). */
static inline int
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
link_index(const PcpCore *core, int32_t link)
{
    return link < 0 ? core->links_len + link : (Py_ssize_t)link;
}

static inline int
link_ok(const PcpCore *core, Py_ssize_t at)
{
    return at >= 0 && at < core->links_len;
}

/* Where the head of (zone, cpu)'s pcp list pindex sits in next/prev: its link is
 * ~(pcp_list_base + (zone * nr_cpus + cpu) * NR_PCP_LISTS + pindex) (PerCpuPages._heads). */
static inline int32_t
pcp_head(const PcpCore *core, long zone, long cpu, long pindex)
{
    return (int32_t)~(core->pcp_list_base + (zone * core->nr_cpus + cpu) * NR_PCP_LISTS + pindex);
}

/* Cache machine._plans[gfp] for the fast path: 0 (cached), 1 (no plan yet: slow), -1 (error). */
static int
load_plan(PcpCore *core, PyObject *gfp, long long gfp_value)
{
    PyObject *plan = PyDict_GetItemWithError(core->plans, gfp); /* borrowed */
    if (plan == NULL)
        return PyErr_Occurred() ? -1 : 1;
    if (!PyTuple_Check(plan) || PyTuple_GET_SIZE(plan) != 4)
        return 1;
    PyObject *zonelist = PyTuple_GET_ITEM(plan, 2);
    long mt, highest, zone = -1;
    if (small_arg(PyTuple_GET_ITEM(plan, 1), 0, MAX_NR_ZONES, &highest) ||
        !PyTuple_CheckExact(zonelist) || PyTuple_GET_SIZE(zonelist) < 1 ||
        !PyLong_CheckExact(PyTuple_GET_ITEM(plan, 3)))
        return 1;
    long long flags = PyLong_AsLongLong(PyTuple_GET_ITEM(plan, 3));
    if (flags == -1 && PyErr_Occurred())
        return -1;
    PyObject *first = PyTuple_GET_ITEM(zonelist, 0);
    for (long i = 0; i < PyTuple_GET_SIZE(core->zones); i++)
        if (PyTuple_GET_ITEM(core->zones, i) == first)
            zone = i;
    if (zone < 0)
        return 1;
    /* A plan the fast path cannot serve (no pcp list type, highatomic) is cached too: its
     * calls go straight to the pure method. */
    core->plan_fast = !small_arg(PyTuple_GET_ITEM(plan, 0), 0, MIGRATE_PCPTYPES, &mt) &&
                      !(flags & core->alloc_highatomic);
    core->plan_gfp = gfp_value;
    core->plan_flags = flags;
    core->plan_mt = core->plan_fast ? mt : 0;
    core->plan_highest = highest;
    core->plan_zone = zone;
    core->plan_valid = 1;
    return 0;
}

static PyObject *
pcp_alloc_pages(PcpCore *core, PyObject *const *args, Py_ssize_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    long order = 0, cpu = 0;
    if (kwnames != NULL || nargs > 3)
        goto slow;
    if (nargs >= 1 && small_arg(args[0], 0, 1, &order))
        goto slow;
    if (nargs >= 3 && small_arg(args[2], 0, core->nr_cpus, &cpu))
        goto slow;
    PyObject *gfp = nargs >= 2 ? args[1] : core->gfp_kernel;
    if (!PyLong_CheckExact(gfp))
        goto slow;
    int overflow;
    long long gfp_value = PyLong_AsLongLongAndOverflow(gfp, &overflow);
    if (overflow || gfp_value < 0)
        goto slow;
    if (!core->plan_valid || core->plan_gfp != gfp_value) {
        int rc = load_plan(core, gfp, gfp_value);
        if (rc < 0)
            return NULL;
        if (rc > 0)
            goto slow;
    }
    if (!core->plan_fast)
        goto slow;
    long long flags = core->plan_flags;
    long zone = core->plan_zone, mt = core->plan_mt;
    int64_t *zv = core->zone_values + zone * Z_NR_VALUES;
    /* get_page_from_freelist's first zone: not below high, and over the high mark on
     * zone_watermark_fast's order-0 shortcut. */
    if (zv[Z_BELOW_HIGH])
        goto slow;
    int64_t free = zv[Z_FREE_PAGES];
    int64_t unusable = (flags & core->alloc_reserves) ? 0 : zv[Z_NR_FREE_HIGHATOMIC];
    if (!(free - (free < unusable ? free : unusable) >
          zv[Z_WATERMARK + core->wmark_high] + zv[Z_WATERMARK_BOOST] +
              zv[Z_LOWMEM_RESERVE + core->plan_highest]))
        goto slow;
    if ((flags & core->alloc_kswapd) && zv[Z_BOOSTED_WATERMARK])
        goto slow; /* wakeup_kswapd ends the boost: the pure path */
    /* rmqueue_pcplist: a non-empty list. */
    Py_ssize_t head_at = link_index(core, pcp_head(core, zone, cpu, mt));
    int32_t pfn = core->next[head_at];
    if (pfn < 0 || pfn >= core->nr_pages)
        goto slow;
    Py_ssize_t before = link_index(core, core->prev[pfn]), after = link_index(core, core->next[pfn]);
    if (!link_ok(core, before) || !link_ok(core, after))
        goto slow;
    PyObject *result = PyLong_FromLong(pfn);
    if (result == NULL)
        return NULL;
    /* Every check passed: the state changes of the pure path. */
    int64_t *pv = core->pcp_values + (zone * core->nr_cpus + cpu) * P_NR_VALUES;
    pv[P_FREE_COUNT] >>= 1;
    core->next[before] = core->next[pfn];
    core->prev[after] = core->prev[pfn];
    pv[P_COUNT] -= 1;
    zv[Z_NUMA_HIT] += 1;
    core->state[pfn] = KMEM_ALLOCATED;
    core->alloc_mt[pfn] = (unsigned char)mt;
    core->pfmemalloc[pfn] = 0; /* (a pcp hit is the first pass's: never the reserves') */
    core->machine_values[M_ALLOCATIONS] += 1;
    return result;
slow:
    return PyObject_Vectorcall(core->pure_alloc, args, nargsf, kwnames);
}

static PyObject *
pcp_free_pages(PcpCore *core, PyObject *const *args, Py_ssize_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    long pfn, order, cpu = 0, zone = -1;
    if (kwnames != NULL || nargs < 2 || nargs > 3 ||
        small_arg(args[0], 0, (long)core->nr_pages, &pfn) || small_arg(args[1], 0, 1, &order) ||
        (nargs == 3 && small_arg(args[2], 0, core->nr_cpus, &cpu)))
        goto slow;
    /* The zone of pfn (machine._zone_of). */
    for (Py_ssize_t i = 0; i < core->nr_zones; i++) {
        if (core->zone_start[i] <= pfn && pfn < core->zone_end[i]) {
            zone = core->zone_index[i];
            break;
        }
    }
    if (zone < 0 || core->state[pfn] != KMEM_ALLOCATED)
        goto slow;  /* no zone, or not an allocated order-0 frame: the pure path's errors */
    Py_ssize_t block = pfn >> PAGEBLOCK_ORDER;
    if (block >= core->nr_pageblocks || core->pageblock_mt[block] >= MIGRATE_PCPTYPES)
        goto slow;  /* isolated or highatomic pageblocks */
    long mt = core->pageblock_mt[block];
    int64_t *zv = core->zone_values + zone * Z_NR_VALUES;
    int64_t *pv = core->pcp_values + (zone * core->nr_cpus + cpu) * P_NR_VALUES;
    int64_t count = pv[P_COUNT], high_min = pv[P_HIGH_MIN], high_max = pv[P_HIGH_MAX];
    int64_t batch = pv[P_BATCH];
    if (batch < 0 || batch >= ((int64_t)1 << 40))
        goto slow;
    /* nr_pcp_high(batch, free_high=False) without its tuning branches: the clamped high, on a
     * zone that is not reclaiming and (unless high is fixed) not below high; the free must
     * leave count below it (else free_pcppages_bulk drains). */
    int64_t clamped = pv[P_HIGH] < high_min ? high_min : pv[P_HIGH];
    if (clamped > high_max)
        clamped = high_max;
    if (clamped <= 0 || count + 1 >= clamped || zv[Z_RECLAIM_ACTIVE] ||
        (high_min != high_max && zv[Z_BELOW_HIGH]))
        goto slow;
    int32_t head = pcp_head(core, zone, cpu, mt);
    Py_ssize_t head_at = link_index(core, head);
    Py_ssize_t first = link_index(core, core->next[head_at]);
    if (!link_ok(core, first))
        goto slow;
    /* Every check passed: the state changes of free_pages + free_frozen_page_commit. */
    core->machine_values[M_FREES] += 1;
    pv[P_ALLOC_FACTOR] >>= 1;
    core->next[pfn] = core->next[head_at];
    core->prev[pfn] = head;
    core->prev[first] = (int32_t)pfn;
    core->next[head_at] = (int32_t)pfn;
    core->state[pfn] = PCP_STATE;
    pv[P_COUNT] = count + 1;
    pv[P_FLAGS] &= ~(int64_t)PCPF_PREV_FREE_HIGH_ORDER;
    if (pv[P_FREE_COUNT] < batch << PCP_BATCH_SCALE_MAX)
        pv[P_FREE_COUNT] += 1;
    pv[P_HIGH] = clamped;
    Py_RETURN_NONE;
slow:
    return PyObject_Vectorcall(core->pure_free, args, nargsf, kwnames);
}

/* A buffer of int64s of exactly `len` items. */
static int
get_values(PyObject *obj, Py_buffer *view, Py_ssize_t len, const char *what)
{
    if (kmem_get_buffer(obj, view, 8, what) < 0)
        return -1;
    if (view->len != len * 8) {
        PyErr_Format(PyExc_ValueError, "PcpCore: %s needs %zd values", what, len);
        PyBuffer_Release(view);
        view->obj = NULL;
        return -1;
    }
    return 0;
}

static int
pcp_core_init(PcpCore *core, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"machine", "state", "alloc_mt", "pfmemalloc", "pageblock_mt",
                               "next", "prev",
                               "machine_values", "zone_values", "pcp_values", "nr_pages",
                               "nr_cpus", "pcp_list_base", "gfp_kernel", "alloc_highatomic",
                               "alloc_reserves", "alloc_kswapd", "wmark_high", "pure_alloc_pages",
                               "pure_free_pages", "layout", NULL};
    PyObject *machine, *state, *alloc_mt, *pfmemalloc, *pageblock_mt, *next, *prev, *gfp_kernel;
    PyObject *pa, *pf;
    PyObject *machine_values, *zone_values, *pcp_values, *layout;
    Py_ssize_t nr_pages, pcp_list_base;
    long nr_cpus, highatomic, reserves, kswapd, wmark_high;
    if (core->plans != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a PcpCore is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "$OOOOOOOOOOnlnOllllOOO!", keywords, &machine,
                                     &state, &alloc_mt, &pfmemalloc, &pageblock_mt, &next, &prev,
                                     &machine_values, &zone_values, &pcp_values, &nr_pages,
                                     &nr_cpus, &pcp_list_base, &gfp_kernel, &highatomic,
                                     &reserves, &kswapd, &wmark_high, &pa, &pf, &PyTuple_Type,
                                     &layout))
        return -1;
    /* The Python side's indices, in machine.py's _CORE_LAYOUT order, must be this file's. */
    static const long expected[] = {
        MAX_NR_ZONES, NR_PCP_LISTS, PAGEBLOCK_ORDER, MIGRATE_PCPTYPES, PCP_STATE,
        KMEM_ALLOCATED, PCPF_PREV_FREE_HIGH_ORDER, PCP_BATCH_SCALE_MAX,
        Z_FREE_PAGES, Z_NR_FREE_HIGHATOMIC, Z_WATERMARK_BOOST, Z_BELOW_HIGH,
        Z_BOOSTED_WATERMARK, Z_RECLAIM_ACTIVE, Z_NUMA_HIT, Z_WATERMARK, Z_LOWMEM_RESERVE,
        Z_NR_VALUES, P_COUNT, P_HIGH, P_HIGH_MIN, P_HIGH_MAX, P_BATCH, P_FLAGS, P_ALLOC_FACTOR,
        P_FREE_COUNT, P_NR_VALUES, M_ALLOCATIONS, M_FREES, M_FAILURES, M_NR_VALUES,
    };
    Py_ssize_t nr_expected = (Py_ssize_t)(sizeof expected / sizeof expected[0]);
    int same = PyTuple_GET_SIZE(layout) == nr_expected;
    for (Py_ssize_t i = 0; same && i < nr_expected; i++) {
        PyObject *item = PyTuple_GET_ITEM(layout, i);
        same = PyLong_CheckExact(item) && PyLong_AsLong(item) == expected[i];
    }
    if (!same) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError,
                            "PcpCore: the Python layout of zone/pcp values differs from csrc/pcp.c's");
        return -1;
    }
    if (nr_cpus < 1 || nr_cpus > (1L << 20) || pcp_list_base < 0) {
        PyErr_SetString(PyExc_ValueError, "PcpCore: bad nr_cpus or pcp_list_base");
        return -1;
    }
    if (wmark_high < 0 || wmark_high >= 4) {
        PyErr_SetString(PyExc_ValueError, "PcpCore: wmark_high must be in 0..3");
        return -1;
    }
    PyObject *plans = PyObject_GetAttrString(machine, "_plans");
    if (plans == NULL)
        return -1;
    PyObject *zonelist = PyObject_GetAttrString(machine, "_zonelist");
    PyObject *zones = PyObject_GetAttrString(machine, "zones");
    if (zonelist == NULL || zones == NULL || !PyDict_CheckExact(plans) ||
        !PyTuple_CheckExact(zonelist) || !PyTuple_CheckExact(zones) ||
        PyTuple_GET_SIZE(zones) != MAX_NR_ZONES || PyTuple_GET_SIZE(zonelist) > MAX_NR_ZONES) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "PcpCore needs machine._plans (dict), _zonelist and"
                                             " zones (tuples of at most MAX_NR_ZONES)");
        Py_DECREF(plans);
        Py_XDECREF(zonelist);
        Py_XDECREF(zones);
        return -1;
    }
    core->plans = plans;
    core->zones = zones;
    core->nr_zones = PyTuple_GET_SIZE(zonelist);
    for (Py_ssize_t i = 0; i < core->nr_zones; i++) {
        PyObject *zone = PyTuple_GET_ITEM(zonelist, i);
        long long index;
        if (get_ll(zone, "start_pfn", &core->zone_start[i]) < 0 ||
            get_ll(zone, "end_pfn", &core->zone_end[i]) < 0 || get_ll(zone, "index", &index) < 0 ||
            index < 0 || index >= MAX_NR_ZONES || PyTuple_GET_ITEM(zones, index) != zone) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "PcpCore: a zone not at its index");
            Py_DECREF(zonelist);
            return -1;
        }
        core->zone_index[i] = (long)index;
    }
    Py_DECREF(zonelist);
    if (kmem_get_buffer(state, &core->state_view, 1, "state") < 0)
        return -1;
    core->state = core->state_view.buf;
    if (kmem_get_buffer(alloc_mt, &core->alloc_mt_view, 1, "alloc_mt") < 0)
        return -1;
    core->alloc_mt = core->alloc_mt_view.buf;
    if (kmem_get_buffer(pfmemalloc, &core->pfmemalloc_view, 1, "pfmemalloc") < 0)
        return -1;
    core->pfmemalloc = core->pfmemalloc_view.buf;
    if (kmem_get_buffer(pageblock_mt, &core->pageblock_view, 1, "pageblock_mt") < 0)
        return -1;
    core->pageblock_mt = core->pageblock_view.buf;
    if (kmem_get_buffer(next, &core->next_view, 4, "next") < 0)
        return -1;
    core->next = core->next_view.buf;
    if (kmem_get_buffer(prev, &core->prev_view, 4, "prev") < 0)
        return -1;
    core->prev = core->prev_view.buf;
    if (get_values(machine_values, &core->machine_view, M_NR_VALUES, "machine_values") < 0 ||
        get_values(zone_values, &core->zone_view, MAX_NR_ZONES * Z_NR_VALUES, "zone_values") < 0 ||
        get_values(pcp_values, &core->pcp_view, MAX_NR_ZONES * nr_cpus * P_NR_VALUES,
                   "pcp_values") < 0)
        return -1;
    core->machine_values = core->machine_view.buf;
    core->zone_values = core->zone_view.buf;
    core->pcp_values = core->pcp_view.buf;
    core->links_len = core->next_view.len / 4;
    /* Every pcp list head must lie in next/prev, below the frames' links. */
    Py_ssize_t last_head = pcp_list_base + MAX_NR_ZONES * nr_cpus * NR_PCP_LISTS;
    if (nr_pages < 0 || nr_pages > core->state_view.len || nr_pages > core->alloc_mt_view.len ||
        nr_pages > core->pfmemalloc_view.len ||
        core->next_view.len != core->prev_view.len || core->links_len > INT32_MAX ||
        nr_pages + last_head > core->links_len ||
        (nr_pages - 1) >> PAGEBLOCK_ORDER >= core->pageblock_view.len) {
        PyErr_SetString(PyExc_ValueError, "PcpCore: buffers smaller than nr_pages and the lists");
        return -1;
    }
    core->nr_pages = nr_pages;
    core->nr_pageblocks = core->pageblock_view.len;
    core->pcp_list_base = pcp_list_base;
    core->nr_cpus = nr_cpus;
    core->alloc_highatomic = highatomic;
    core->alloc_reserves = reserves;
    core->alloc_kswapd = kswapd;
    core->wmark_high = wmark_high;
    /* The machine owns its core (machine.alloc_pages is bound to it): a cycle the GC sees. */
    core->machine = Py_NewRef(machine);
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
    Py_VISIT(core->zones);
    Py_VISIT(core->pure_alloc);
    Py_VISIT(core->pure_free);
    Py_VISIT(core->gfp_kernel);
    return 0;
}

static int
pcp_core_clear(PcpCore *core)
{
    Py_CLEAR(core->machine);
    Py_CLEAR(core->plans);
    Py_CLEAR(core->zones);
    Py_CLEAR(core->pure_alloc);
    Py_CLEAR(core->pure_free);
    Py_CLEAR(core->gfp_kernel);
    return 0;
}

static void
release_views(PcpCore *core)
{
    Py_buffer *views[] = {&core->state_view, &core->alloc_mt_view, &core->pfmemalloc_view,
                          &core->pageblock_view,
                          &core->next_view, &core->prev_view, &core->machine_view,
                          &core->zone_view, &core->pcp_view};
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
    return 0;
}
