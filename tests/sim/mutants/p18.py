# Mutant: a leader's message of our term is taken from any sender, not only the term's leader.
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/raft/step.c'; s=open(p).read()
o='''               r->term_lead != RAFT_NONE && m->from != r->term_lead) {'''
assert o in s; s=s.replace(o,'''               r->term_lead != RAFT_NONE && m->from != r->term_lead && 0) {''')
open(p,'w').write(s)
