# Mutant: a member that never answered counts as caught up (match 0 is taken for progress).
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/raft/progress.c'; s=open(p).read()
o='''            return pr->answered && (pr->match >= r->log.committed ||'''
assert o in s; s=s.replace(o,'''            return (pr->match >= r->log.committed ||'''); open(p,'w').write(s)
