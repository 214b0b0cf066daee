# Mutant: a leader lease of two election timeouts.
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/raft/readindex.c'; s=open(p).read()
o='''    return now + r->cfg.lease_margin_ticks + 1 <
           r->lease_start + r->cfg.election_ticks;'''
assert o in s; s=s.replace(o,'''    return now < r->lease_start + 2 * r->cfg.election_ticks;'''); open(p,'w').write(s)
