# Mutant: an EXPIRE is never stale (a keepalive applied after the leader decided does not save the lease: it and its keys are deleted anyway).
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/kv/kv_apply.c'; s=open(p).read()
o='''        r.lease_stale = l != NULL && op == KV_LEASE_EXPIRE && l->refreshed != ttl;'''
assert o in s; s=s.replace(o,'''        r.lease_stale = false;'''); open(p,'w').write(s)
