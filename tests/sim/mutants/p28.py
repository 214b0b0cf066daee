# Mutant: check-quorum waits one silent election timeout more than check_quorum_rounds says (a cut-off leader leads on for another timeout).
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/raft/raft.c'; s=open(p).read()
o='''        } else if (++r->quorum_misses >= r->cfg.check_quorum_rounds) {'''
assert o in s; s=s.replace(o,'''        } else if (++r->quorum_misses >= r->cfg.check_quorum_rounds + 1) {'''); open(p,'w').write(s)
