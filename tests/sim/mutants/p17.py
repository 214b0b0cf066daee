# Mutant: messages' terms are believed: no RAFT_TERM_MAX check, no cap on a jump.
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/raft/step.c'; s=open(p).read()
o='''    if (m->term > RAFT_TERM_MAX || m->log_term > RAFT_TERM_MAX ||'''
assert o in s; s=s.replace(o,'''    if (m->log_term > RAFT_TERM_MAX ||''')
o='''        } else if (m->term - r->term > RAFT_TERM_JUMP_MAX) {'''
assert o in s; s=s.replace(o,'''        } else if (0) {'''); open(p,'w').write(s)
p='src/raft/raft.c'; s=open(p).read()
o='''    assert(term >= r->term && term <= RAFT_TERM_MAX);'''
assert o in s; s=s.replace(o,''); open(p,'w').write(s)
