"""Stand-ins for the other Slicer modules SR4ZCT.py talks to: ``SampleData`` (a Slicer core module whose
logic needs Qt), ``DICOMLib.DICOMUtils`` (the DICOM module's helpers, over CTK's indexer) and ``PyTorchUtils``
(the PyTorch extension), with their real signatures."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import types
import urllib.request
from pathlib import Path


def _digest(algo: str, path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.new(algo.lower(), f.read()).hexdigest()


def make_sample_data() -> types.ModuleType:
    mod = types.ModuleType("SampleData")

    class SampleDataSource:
        def __init__(self, sampleName=None, sampleDescription=None, uris=None, fileNames=None, nodeNames=None,
                     checksums=None, loadFiles=None, customDownloader=None, thumbnailFileName=None,
                     loadFileTypes=None, loadFileProperties=None, loadFileType=None):  # fmt: skip
            self.sampleName = sampleName
            if isinstance(uris, str):
                uris, fileNames, nodeNames = [uris], [fileNames], [nodeNames]
                checksums = [checksums] if checksums is not None else None
            self.uris, self.fileNames, self.nodeNames = uris, fileNames, nodeNames
            self.checksums = checksums
            self.customDownloader = customDownloader
            self.thumbnailFileName = thumbnailFileName

    class SampleDataLogic:
        sources: dict[str, list[SampleDataSource]] = {}

        @staticmethod
        def registerCustomSampleDataCategory(category, title=None):
            SampleDataLogic.sources.setdefault(category, [])

        @staticmethod
        def registerCustomSampleDataSource(category="Custom", sampleName=None, uris=None, fileNames=None,
                                           nodeNames=None, customDownloader=None, thumbnailFileName=None,
                                           loadFileTypes=None, loadFiles=None, loadFileProperties={},  # noqa: B006
                                           checksums=None, loadFileType=None):  # fmt: skip
            source = SampleDataSource(sampleName=sampleName, uris=uris, fileNames=fileNames, nodeNames=nodeNames,
                                      checksums=checksums, loadFiles=loadFiles, customDownloader=customDownloader,
                                      thumbnailFileName=thumbnailFileName, loadFileTypes=loadFileTypes,
                                      loadFileProperties=loadFileProperties, loadFileType=loadFileType)  # fmt: skip
            SampleDataLogic.sources.setdefault(category, []).append(source)

        def downloadSample(self, sampleName):
            """As Slicer's (Modules/Scripted/SampleData/SampleData.py): the first loaded node of the source's
            files, fetched into the cache by their URI (urllib: file:// and http(s)://), never its custom
            downloader (only the tile's button calls that). A failed download is logged and leaves no node,
            so this raises IndexError, as in Slicer."""
            return self.downloadSamples(sampleName)[0]

        def downloadSamples(self, sampleName):
            for sources in SampleDataLogic.sources.values():
                for source in sources:
                    if source.sampleName == sampleName:
                        return self.downloadFromSource(source)
            return []

        def clickTile(self, sampleName):
            """What the tile's button does: the custom downloader when there is one, else a download."""
            for sources in SampleDataLogic.sources.values():
                for source in sources:
                    if source.sampleName == sampleName:
                        if source.customDownloader:
                            return source.customDownloader(source)
                        return self.downloadFromSource(source)
            raise ValueError(f"no sample data source named {sampleName!r}")

        def downloadFromSource(self, source, maximumAttemptsCount=3):
            import slicer

            nodes = []
            checksums = source.checksums or [None] * len(source.uris)
            for uri, fileName, nodeName, checksum in zip(
                source.uris, source.fileNames, source.nodeNames, checksums, strict=True
            ):
                for _attempt in range(maximumAttemptsCount):
                    try:
                        filePath = self.downloadFile(uri, slicer.app.cachePath, fileName, checksum)
                    except ValueError as exc:
                        logging.error(str(exc))
                        continue
                    nodes.append(slicer.util.loadNodeFromFile(filePath, properties={"name": nodeName}))
                    break
            return nodes

        @staticmethod
        def downloadFile(uri, destFolderPath, name, checksum=None):
            filePath = os.path.join(destFolderPath, name)
            algo, digest = checksum.split(":", 1) if checksum else (None, None)
            if os.path.exists(filePath) and algo and _digest(algo, filePath) != digest.lower():
                os.remove(filePath)  # a cached copy that is not the expected file: fetched again
            if not os.path.exists(filePath) or os.stat(filePath).st_size == 0:
                try:
                    urllib.request.urlretrieve(uri, filePath)
                except OSError as exc:
                    raise ValueError(f"Failed to download {uri} to {filePath}: {exc}") from None
                if algo and _digest(algo, filePath) != digest.lower():
                    os.remove(filePath)
                    raise ValueError(f"Checksum verification failed for {uri}")
            return filePath

    mod.SampleDataLogic = SampleDataLogic
    mod.SampleDataSource = SampleDataSource
    return mod


def make_pytorch_utils(torch_installed: bool | None, install_succeeds: bool, calls: list) -> types.ModuleType:
    """``torch_installed=None``: report what is really importable (the replica venv has torch)."""
    mod = types.ModuleType("PyTorchUtils")
    state = {"installed": torch_installed}

    class PyTorchUtilsLogic:
        @staticmethod
        def torchInstalled():
            calls.append(("torchInstalled",))
            if state["installed"] is None:
                return importlib.util.find_spec("torch") is not None
            return state["installed"]

        def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None,
                         torchvisionVersionRequirement=None):  # fmt: skip
            calls.append(("installTorch", askConfirmation, forceComputationBackend, torchVersionRequirement))
            if not install_succeeds:
                return None
            state["installed"] = True
            import torch

            return torch

    mod.PyTorchUtilsLogic = PyTorchUtilsLogic
    return mod


def make_dicomlib(database_dir: Path) -> types.ModuleType:
    """``DICOMLib`` with ``DICOMUtils.importDicom(dicomDataDir, dicomDatabase=None, copyFiles=False)``: the
    files under the folder are indexed into the database; with ``copyFiles`` copied into its folder first."""
    mod = types.ModuleType("DICOMLib")
    utils = types.ModuleType("DICOMLib.DICOMUtils")

    def importDicom(dicomDataDir, dicomDatabase=None, copyFiles=False):
        import slicer

        database = dicomDatabase if dicomDatabase is not None else slicer.dicomDatabase
        files = sorted(p for p in Path(dicomDataDir).rglob("*") if p.is_file())
        if copyFiles:
            target = Path(database_dir) / "dicom" / Path(dicomDataDir).name
            target.mkdir(parents=True, exist_ok=True)
            files = [Path(shutil.copy2(p, target / p.name)) for p in files]
        database.index(files)
        return True

    utils.importDicom = importDicom
    mod.DICOMUtils = utils
    return mod
