import gc, time, sys
class Conn:
    __slots__ = ("rooms", "buf", "d", "cb", "peer", "__weakref__")
def make(i):
    c = Conn(); c.rooms = {f"r{i%10}"}; c.buf = []; c.d = {"a": i, "b": [i]}; c.peer = (str(i), i)
    x = [i]; c.cb = lambda: x  # a closure: function + cell + list
    return c
def timed(f):
    t = time.perf_counter(); f(); return (time.perf_counter() - t) * 1e3
gc.collect(); gc.disable()
base = len(gc.get_objects())
conns = [make(i) for i in range(10_000)]
per = (len(gc.get_objects()) - base) / 10_000
print(f"gc objects per fake conn: {per:.1f}; tracked total {len(gc.get_objects())}")
print(f"full collect, nothing frozen: {timed(gc.collect):.1f} ms")
gc.collect(1); print(f"collect(1) right after: {timed(lambda: gc.collect(1)):.2f} ms")
gc.freeze(); print("freeze_count", gc.get_freeze_count(), "get_objects() len", len(gc.get_objects()))
print(f"full collect, all frozen: {timed(gc.collect):.2f} ms")
# frozen objects freed by refcount leave the permanent generation
fc = gc.get_freeze_count(); del conns[:5000]; print("after dropping 5000 frozen conns, freeze_count -", fc - gc.get_freeze_count())
# a cycle created before the freeze and dropped after it is not collected while frozen
class Node: pass
gc.unfreeze(); gc.collect()
a = Node(); a.self = a; wr = __import__("weakref").ref(a); del a
gc.freeze(); n = gc.collect(); print("cycle frozen before it became garbage: collected", n, "alive", wr() is not None)
gc.unfreeze(); n = gc.collect(); print("after unfreeze: collected", n, "alive", wr() is not None)
print(sys.version)
