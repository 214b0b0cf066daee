# Mutant: no check-quorum in the leader's tick (a cut-off leader keeps leading).
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/raft/raft.c'; s=open(p).read()
o='''        } else if (++r->quorum_misses >= r->cfg.check_quorum_rounds) {'''
assert o in s; s=s.replace(o,'''        } else if (++r->quorum_misses >= r->cfg.check_quorum_rounds && 0) {'''); open(p,'w').write(s)
