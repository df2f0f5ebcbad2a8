"""Stand-ins for the other Slicer modules SR4ZCT.py talks to: ``SampleData`` (a Slicer core module whose
logic needs Qt), ``DICOMLib.DICOMUtils`` (the DICOM module's helpers, over CTK's indexer) and ``PyTorchUtils``
(the PyTorch extension), with their real signatures."""

from __future__ import annotations

import importlib.util
import shutil
import types
from pathlib import Path


def make_sample_data() -> types.ModuleType:
    mod = types.ModuleType("SampleData")

    class SampleDataSource:
        def __init__(self, sampleName=None, sampleDescription=None, uris=None, fileNames=None, nodeNames=None,
                     checksums=None, loadFiles=None, customDownloader=None, thumbnailFileName=None,
                     loadFileTypes=None, loadFileProperties=None, loadFileType=None):  # fmt: skip
            self.sampleName = sampleName
            if isinstance(uris, str):
                uris, fileNames, nodeNames = [uris], [fileNames], [nodeNames]
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
            """What clicking the tile does: the source's custom downloader, called with the source."""
            for sources in SampleDataLogic.sources.values():
                for source in sources:
                    if source.sampleName == sampleName:
                        return source.customDownloader(source)
            raise ValueError(f"no sample data source named {sampleName!r}")

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
