# Mutant: no check-quorum in the leader's tick (a cut-off leader keeps leading).
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/raft/raft.c'; s=open(p).read()
o='''        if (!r->cfg.disable_check_quorum && !quorum_active(r)) {'''
assert o in s; s=s.replace(o,'''        if (!r->cfg.disable_check_quorum && !quorum_active(r) && 0) {'''); open(p,'w').write(s)
