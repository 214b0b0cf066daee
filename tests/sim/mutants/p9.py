# Mutant: the lease judged by the ticks delivered, not by the caller's clock.
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/raft/readindex.c'; s=open(p).read()
o='''    if (now < r->now)
        now = r->now;'''
assert o in s; s=s.replace(o,'''    now = r->now;'''); open(p,'w').write(s)
