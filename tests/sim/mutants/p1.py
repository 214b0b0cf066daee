# Mutant: commit an entry of an older term by counting its replicas (Figure 8).
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/raft/replication.c'; s=open(p).read()
o='''        if (idx <= r->log.committed ||
            raft__log_term(&r->log, idx) != r->term)'''
assert o in s; s=s.replace(o,'''        if (idx <= r->log.committed)'''); open(p,'w').write(s)
