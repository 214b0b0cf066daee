# Mutant: a batch capped at max_apply_bytes still counts everything due as applied: the entries past its bound are never handed out.
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/raft/ready.c'; s=open(p).read()
o='''        l->applied = end;'''
assert o in s; s=s.replace(o,'''        l->applied = limit;'''); open(p,'w').write(s)
