"""Training: fit or fine-tune a model and write it into the lake, where its arrival starts a release.

embedlake train ./ws --kind lsa --name lsa-v2
embedlake train ./ws --base minilm --pairs qrels:../shared/data/cisi --name cisi-ft
embedlake train ./ws --base minilm --pairs self:title --name ws-ft     # no labels needed
"""
