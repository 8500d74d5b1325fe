"""Web handler (FastAPI): one AsyncClient for the app's lifetime, shared by all requests.

    pip install fastapi uvicorn
    uvicorn docs.examples.web_fastapi:app --port 8000
    curl -X POST localhost:8000/signups -H 'content-type: application/json' -d '{"email": "a@b.c"}'
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

from durably.client import AsyncClient, NotFound, NotReady


class SignupRequest(BaseModel):
    email: str


class Progress(BaseModel):
    step: str
    done: int
    total: int


class SignupStatus(BaseModel):
    signup_id: str
    progress: Progress | None = None
    result: str | None = None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # one pooled client per process; AsyncClient() reads DURABLY_URL / RESTATE_URL;
    # retry=True retries overload and routing errors, and nothing that could run twice
    async with AsyncClient(retry=True) as client:
        app.state.durably = client
        yield


app = FastAPI(lifespan=lifespan)


def durably(request: Request) -> AsyncClient:
    client: AsyncClient = request.app.state.durably
    return client


@app.get("/greet/{name}")
async def greet(name: str, request: Request) -> dict[str, str]:
    text = await durably(request).service("Greeter").call("greet", name, output=str, timeout=10)
    return {"greeting": text}


@app.post("/signups", status_code=202)
async def start_signup(body: SignupRequest, request: Request) -> SignupStatus:
    # the workflow id makes the submit idempotent: a double-click starts one signup
    signup_id = body.email.lower()
    await durably(request).workflow("Signup", signup_id).submit(body.email)
    return SignupStatus(signup_id=signup_id)


@app.get("/signups/{signup_id}")
async def signup_status(signup_id: str, request: Request) -> SignupStatus:
    wf = durably(request).workflow("Signup", signup_id)
    try:
        return SignupStatus(signup_id=signup_id, result=await wf.output(output=str))
    except NotReady:
        progress = await wf.call("status", output=Progress)
        return SignupStatus(signup_id=signup_id, progress=progress)
    except NotFound:
        raise HTTPException(status_code=404, detail="no such signup") from None
