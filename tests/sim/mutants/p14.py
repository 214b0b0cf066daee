# Mutant: a PRE_VOTE of a higher term moves the receiver's term up.
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/raft/step.c'; s=open(p).read()
o='''        if (m->type == RAFT_MSG_PRE_VOTE ||
            (m->type == RAFT_MSG_PRE_VOTE_RESP && !m->reject)) {'''
assert o in s; s=s.replace(o,'''        if (m->type == RAFT_MSG_PRE_VOTE_RESP && !m->reject) {'''); open(p,'w').write(s)
