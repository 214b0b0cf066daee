# Mutant: the bound on a batch's applied bytes is ignored: a restart's replay or a follower's catch-up is applied in one batch, which stalls the daemon's loop for as long.
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/raft/ready.c'; s=open(p).read()
o='''        if (used > budget && i > l->applied + 1)'''
assert o in s; s=s.replace(o,'''        if (used > budget + SIZE_MAX / 2 && i > l->applied + 1)'''); open(p,'w').write(s)
