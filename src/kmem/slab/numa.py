"""NUMA nodes under the slab allocator: which node a CPU and a page are on, and pages by node.

``SlabAllocator(buddy, nr_cpus, nr_nodes=N)`` splits the buddy allocator's frames into N equal
node ranges (node n holds pfns [n * node_pages, (n + 1) * node_pages)) and puts the CPUs on the
nodes in contiguous runs, as QEMU's default ``-numa`` layout and most firmware number them:
cpu c is on node ``c * N // nr_cpus``. A slab's node is the node of its first page
(Linux slab_nid).

Each node's range must be a whole number of max-order blocks: a free block then never spans
two nodes, and the blocks of a node on each free list of the single buddy allocator are, in
order, the free list that node's own zone would have (kmem.page.buddy.alloc_pages_in), so one
BuddyAllocator serves as N per-node zones without a change to its lists.

Page allocation on a node (alloc_pages_node, __alloc_pages with the node's zonelist): the
preferred node first, then the other nodes in zonelist order, unless __GFP_THISNODE. The
zonelist order is find_next_best_node's for a machine where every remote node is at the same
distance (QEMU's default, SLIT 10/20): the nodes above the local one first ("prefer the next
node"), then those below, each ascending. (Linux also rotates equal-distance nodes by the
load of earlier zonelists, node_load[]; with two nodes that makes no difference.)

NUMA_NO_NODE (-1) asks for the allocating CPU's node (numa_mem_id). With one node (the
default) none of this runs: the caches take pages from the buddy allocator as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from kmem.errors import InvalidArgumentError, InvalidTypeError
from kmem.page.gfp import __GFP_THISNODE

if TYPE_CHECKING:
    from kmem.page.buddy import BuddyAllocator

NUMA_NO_NODE: Final = -1
_GFP_THISNODE: Final = __GFP_THISNODE


class NodeLayoutError(InvalidArgumentError):
    """A node count the allocator cannot lay out: not a positive int, more nodes than CPUs,
    memory that does not split into whole max-order blocks per node, or a page source that
    has one node only (a page machine, the classic slab policy)."""


class InvalidNodeError(InvalidArgumentError):
    """A node= argument that is neither NUMA_NO_NODE (-1) nor one of the allocator's nodes."""


def check_nr_nodes(nr_nodes: object, nr_cpus: int, buddy: BuddyAllocator) -> int:
    """``nr_nodes`` if the allocator can have that many nodes, else the specific error."""
    if isinstance(nr_nodes, bool) or not isinstance(nr_nodes, int):
        raise InvalidTypeError(f"nr_nodes must be an int, not {type(nr_nodes).__name__}")
    if nr_nodes < 1:
        raise NodeLayoutError(f"nr_nodes must be at least 1, got {nr_nodes}")
    if nr_nodes > nr_cpus:
        # (Linux allows memory-only nodes; kmem's contiguous CPU runs give each node a CPU)
        raise NodeLayoutError(
            f"nr_nodes {nr_nodes} is more than the {nr_cpus} CPUs: every node needs a CPU")
    block = 1 << buddy.max_order
    if nr_nodes > 1 and buddy.nr_pages % (nr_nodes * block):
        raise NodeLayoutError(
            f"{buddy.nr_pages} pages do not split into {nr_nodes} nodes of whole order-"
            f"{buddy.max_order} blocks ({block} pages): each node needs a multiple of"
            f" {block} pages")
    return int(nr_nodes)


class NodeLayout:
    """The nodes of a slab allocator: CPUs and pfn ranges per node, and zonelists."""

    def __init__(self, buddy: BuddyAllocator, nr_cpus: int, nr_nodes: int) -> None:
        self.nr_nodes: Final = nr_nodes
        self.node_pages: Final = buddy.nr_pages // nr_nodes
        # cpu -> node (cpu_to_node), a list the hot paths index
        self.cpu_node: Final = [cpu * nr_nodes // nr_cpus for cpu in range(nr_cpus)]
        # node -> its zonelist: itself, then the others in fallback order
        self.zonelist: Final = [
            [node, *range(node + 1, nr_nodes), *range(node)]
            for node in range(nr_nodes)]
        self._buddy: Final = buddy

    def node_of_pfn(self, pfn: int) -> int:
        """pfn_to_nid."""
        return pfn // self.node_pages

    def check_node(self, node: object) -> int:
        """``node`` if it is NUMA_NO_NODE or a node of this layout, else the specific error."""
        if isinstance(node, bool) or not isinstance(node, int):
            raise InvalidTypeError(f"node must be an int, not {type(node).__name__}")
        if node != NUMA_NO_NODE and not 0 <= node < self.nr_nodes:
            raise InvalidNodeError(
                f"node {node} is not NUMA_NO_NODE (-1) nor in 0..{self.nr_nodes - 1}")
        return int(node)

    def alloc_pages(self, order: int, gfp: int, node: int) -> int:
        """alloc_pages_node: a block on ``node`` (a node, not NUMA_NO_NODE), else on the
        others in zonelist order unless __GFP_THISNODE; OutOfMemoryError when none has one."""
        size = self.node_pages
        nodes = self.zonelist[node][:1] if gfp & _GFP_THISNODE else self.zonelist[node]
        return self._buddy.alloc_pages_in(order, [(n * size, (n + 1) * size) for n in nodes])


def check_one_node(node: object) -> int:
    """NodeLayout.check_node for an allocator of one node (no layout): -1 or 0."""
    if isinstance(node, bool) or not isinstance(node, int):
        raise InvalidTypeError(f"node must be an int, not {type(node).__name__}")
    if node not in (NUMA_NO_NODE, 0):
        raise InvalidNodeError(f"node {node} is not NUMA_NO_NODE (-1) nor 0: one node")
    return int(node)


def check_node_count(nr_nodes: int, what: str) -> None:
    """Refuse nr_nodes > 1 where only one node is modelled (``what`` says where)."""
    if nr_nodes > 1:
        raise NodeLayoutError(f"nr_nodes {nr_nodes}: {what} models one node only")


__all__ = ["NUMA_NO_NODE", "InvalidNodeError", "NodeLayout", "NodeLayoutError",
           "check_node_count", "check_nr_nodes", "check_one_node"]
