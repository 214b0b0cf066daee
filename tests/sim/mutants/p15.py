# Mutant: a new leader takes a membership change before its first entry commits.
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/raft/raft.c'; s=open(p).read()
o='''    r->pending_conf_index = last + 1;
    raft__append_local(r, RAFT_ENTRY_NOOP, NULL, 0);'''
assert o in s; s=s.replace(o,'''    r->pending_conf_index = 0;
    raft__append_local(r, RAFT_ENTRY_NOOP, NULL, 0);'''); open(p,'w').write(s)
