# Mutant: the lease clock is not rebuilt from a restored map (restart, snapshot install): the leases the snapshot brings are unknown to the clock and never expire.
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/lease/lease_kv.c'; s=open(p).read()
o='''    struct rebuild_ctx x = {c, now};
    bool more;
    return kv_lease_list(kv, 0, SIZE_MAX, start_one, &x, &more);'''
assert o in s; s=s.replace(o,'''    (void)start_one;
    return 0;'''); open(p,'w').write(s)
