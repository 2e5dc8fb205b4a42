"""The set folder on disk, below every command that reads or writes one: the one atomic writer (``writer.py``:
every file, every parquet file through ``ParquetFile``, data in shards by ``ShardWriter``), one writer lock per
folder (``lock.py``), the folder's layout and reading (``folder.py``: ``read_output``, staged folders, shard names,
which files prefkit wrote) and its manifest, typed (``manifest_model.py``: ``Manifest``). :mod:`prefkit.sources`
reads a built set through it; :mod:`prefkit.output` writes what goes into one.
"""
