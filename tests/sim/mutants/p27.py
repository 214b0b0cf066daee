# Mutant: the lease clock forgets what is in flight: a leader whose applying lags proposes every due lease's EXPIRE again each retry, faster than it applies them.
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/lease/lease_clock.c'; s=open(p).read()
o='''    c->wait_upto = upto;'''
assert o in s; s=s.replace(o,'''    (void)upto;'''); open(p,'w').write(s)
