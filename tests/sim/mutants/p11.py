# Mutant: the lease comes back once a transfer that sent TIMEOUT_NOW is aborted.
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/raft/readindex.c'; s=open(p).read()
o='''        r->timeout_now_sent || !committed_in_term(r))'''
assert o in s; s=s.replace(o,'''        !committed_in_term(r))'''); open(p,'w').write(s)
