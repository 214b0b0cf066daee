# Mutant: no margin for clock drift (the lease as long as quantization allows).
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/raft/readindex.c'; s=open(p).read()
o='''    return now + r->cfg.lease_margin_ticks + 1 <'''
assert o in s; s=s.replace(o,'''    return now + 1 <'''); open(p,'w').write(s)
