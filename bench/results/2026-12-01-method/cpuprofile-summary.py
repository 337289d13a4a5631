import json,sys,collections,re
p=json.load(open(sys.argv[1]))
nodes={n['id']:n for n in p['nodes']}
dt=collections.Counter()
for s,d in zip(p['samples'],p['timeDeltas']): dt[s]+=d
tot=sum(dt.values())
def cat(u,f):
    if f in('(garbage collector)',):return 'GC'
    if f in('(idle)','(program)','(root)'):return f
    if 'undici' in u:return 'undici'
    if '/dist/src/' in u:
        m=re.search(r'/dist/src/(.*)\.js',u);return 'sidecar:'+m.group(1)
    if u.startswith('node:'):return 'node:'+u[5:].split('/')[-1]
    if 'node_modules' in u: return 'dep:'+u.split('node_modules/')[1].split('/')[0]
    return 'native/other' if not u else u
cc=collections.Counter(); fc=collections.Counter()
for i,t in dt.items():
    n=nodes[i];cf=n['callFrame'];c=cat(cf['url'],cf['functionName'])
    cc[c]+=t; fc[(cf['functionName'] or '(anon)')+' '+c+':'+str(cf['lineNumber']+1)]+=t
idle=cc['(idle)']; busy=tot-idle
print(f"total {tot/1e6:.2f}s busy {busy/1e6:.2f}s")
grp=collections.Counter()
for c,t in cc.items():
    g='sidecar' if c.startswith('sidecar:') else c.split(':')[0] if c.startswith(('node','dep')) else c
    grp[g]+=t
for g,t in grp.most_common(): 
    if g!='(idle)': print(f"  {g:20} {100*t/busy:5.1f}%")
print('-- by file')
for c,t in cc.most_common(25):
    if c!='(idle)': print(f"  {c:45} {100*t/busy:5.1f}%")
print('-- top functions (self)')
for f,t in fc.most_common(30):
    if '(idle)' not in f: print(f"  {100*t/busy:5.1f}% {f}")
