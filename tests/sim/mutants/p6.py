# Mutant: the leader counts itself toward a commit before its write is durable.
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/raft/ready.c'; s=open(p).read()
o='''            raft__pr_maybe_update(self, l->stabled);'''
assert o in s
p2='src/raft/replication.c'; s2=open(p2).read()
o2='''            m[n++] = pr->id == r->id ? r->log.stabled : pr->match;'''
assert o2 in s2; s2=s2.replace(o2,'''            m[n++] = pr->id == r->id ? raft__log_last(&r->log) : pr->match;'''); open(p2,'w').write(s2)
